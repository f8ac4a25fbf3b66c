package ikesock

import "sync"

// Group is the set of IKE sockets one backend opened, so that closing the
// backend closes them. The zero Group is ready to use.
type Group struct {
	mu     sync.Mutex
	conns  map[*conn]struct{}
	closed bool
}

func (g *Group) add(c *conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	if g.conns == nil {
		g.conns = map[*conn]struct{}{}
	}
	g.conns[c] = struct{}{}
	return true
}

func (g *Group) remove(c *conn) {
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
}

func (g *Group) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// Close closes every socket in the group; later Listens with it fail with
// kernelops.ErrClosed. Blocked reads return the closed-socket error.
func (g *Group) Close() {
	g.mu.Lock()
	g.closed = true
	conns := g.conns
	g.conns = nil
	g.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// Len reports how many sockets of the group are open.
func (g *Group) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}
