package ike

import "github.com/keyplane/keyplane/ike/config"

// The IKE SAs are kept by our SPI (Engine.sas) and indexed by connection
// name (Engine.byConn), so that initiating, terminating or reloading a
// connection looks at its own SAs, not at every SA: with 100,000 tunnels
// a scan per initiate made bringing them up quadratic. Every change of
// Engine.sas or of an SA's connection goes through these. Loop-owned.

// addSA adds sa under our SPI spi.
func (e *Engine) addSA(spi uint64, sa *ikeSA) {
	e.sas[spi] = sa
	e.index(sa)
}

// removeSA removes sa (kept under its local SPI).
func (e *Engine) removeSA(sa *ikeSA) {
	if e.sas[sa.localSPI()] == sa {
		delete(e.sas, sa.localSPI())
	}
	e.unindex(sa)
}

// setConn moves sa to connection c (a responder's choice at IKE_AUTH).
func (e *Engine) setConn(sa *ikeSA, c *config.Connection) {
	e.unindex(sa)
	sa.conn = c
	e.index(sa)
}

func (e *Engine) index(sa *ikeSA) {
	if sa.conn == nil {
		return
	}
	m := e.byConn[sa.conn.Name]
	if m == nil {
		m = map[*ikeSA]struct{}{}
		e.byConn[sa.conn.Name] = m
	}
	m[sa] = struct{}{}
}

func (e *Engine) unindex(sa *ikeSA) {
	if sa.conn == nil {
		return
	}
	if m := e.byConn[sa.conn.Name]; m != nil {
		delete(m, sa)
		if len(m) == 0 {
			delete(e.byConn, sa.conn.Name)
		}
	}
}

// indexErr reports where byConn and sas disagree ("" when they agree),
// for tests.
func (e *Engine) indexErr() string {
	n := 0
	for name, m := range e.byConn {
		for sa := range m {
			n++
			if sa.conn == nil || sa.conn.Name != name {
				return "an SA indexed under " + name + " is of another connection"
			}
			if e.sas[sa.localSPI()] != sa {
				return "an SA of " + name + " is indexed but not kept"
			}
		}
	}
	kept := 0
	for _, sa := range e.sas {
		if sa.conn != nil {
			kept++
		}
	}
	if n != kept {
		return "the index holds a different number of SAs than are kept"
	}
	return ""
}
