//go:build linux || freebsd || netbsd || darwin

package pfkey

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/keyplane/keyplane/backends/pfkey/sadb"
	"github.com/keyplane/keyplane/kernelops"
)

// Kernel events come on a socket of their own, registered with
// SADB_REGISTER for ESP, AH and IPcomp: the kernels send ACQUIRE, EXPIRE
// and NAT_T_NEW_MAPPING only to registered sockets. Every PF_KEY socket
// also gets everyone's ADD/DELETE broadcasts; the loop drops those by
// their header before parsing, so it keeps up with bulk changes.
type eventLoop struct {
	s    *sock
	done chan struct{}
	wg   sync.WaitGroup
}

// eventRcvBuf is the event socket's receive buffer: room for thousands
// of messages before the kernel drops any. A variable so a test can
// shrink it.
var eventRcvBuf = 4 << 20

// testHookBeforeRead, when set (by tests only), runs before each read of
// the event socket, so a test can stall the reader.
var testHookBeforeRead func()

// StartEvents implements kernelops.EventStarter: the first subscription
// opens and registers the event socket.
func (b *driver) StartEvents(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return &kernelops.Error{Err: kernelops.ErrClosed}
	}
	if b.ev != nil {
		return nil
	}
	s, err := b.openSock()
	if err != nil {
		return b.sockErr("", err)
	}
	tuneEventSocket(s.fd(), eventRcvBuf)
	for _, t := range []sadb.SAType{sadb.SATypeESP, sadb.SATypeAH, sadb.SATypeIPComp} {
		if err := b.register(ctx, s, t); err != nil {
			s.close()
			return err
		}
	}
	ev := &eventLoop{s: s, done: make(chan struct{})}
	ev.wg.Add(1)
	go b.readEvents(ev)
	b.ev = ev
	return nil
}

// register sends SADB_REGISTER for t on s and waits for its answer there.
func (b *driver) register(ctx context.Context, s *sock, t sadb.SAType) error {
	m := &sadb.Msg{Header: sadb.Header{Type: sadb.MsgRegister, SAType: t, Seq: nextSeq(), PID: b.pid}}
	wire, err := m.Marshal(b.x.d)
	if err != nil {
		return err
	}
	stop := s.deadlineFor(ctx)
	defer stop()
	if err := s.send(wire); err != nil {
		return b.sockErr(t.String(), err)
	}
	for {
		raw, err := s.read()
		if err != nil {
			return b.sockErr(t.String(), timeoutErr(ctx, err))
		}
		rt, errno, seq, pid, ok := header(raw)
		if !ok || rt != sadb.MsgRegister || seq != m.Seq || pid != b.pid {
			continue
		}
		if errno != 0 && syscall.Errno(errno) != syscall.EEXIST {
			return kerr(t.String(), sadb.MsgRegister, syscall.Errno(errno))
		}
		return nil
	}
}

func (ev *eventLoop) stop() {
	close(ev.done)
	ev.s.close() // unblocks the read
	ev.wg.Wait()
}

func (b *driver) readEvents(ev *eventLoop) {
	defer ev.wg.Done()
	fd := ev.s.fd()
	d := b.x.d
	for {
		if testHookBeforeRead != nil {
			testHookBeforeRead()
		}
		if mayHaveLost(fd) {
			b.env.Overrun(-1, "kernel socket: the PF_KEY receive queue reached its limit, where the kernel drops messages silently")
		}
		raw, err := ev.s.read()
		if err != nil {
			select {
			case <-ev.done:
				return
			default:
			}
			if errors.Is(err, syscall.ENOBUFS) {
				b.env.Overrun(-1, "kernel socket (ENOBUFS)")
				continue
			}
			if errors.Is(err, os.ErrClosed) {
				return
			}
			b.log.Warn("PF_KEY event socket", "err", err)
			select {
			case <-ev.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		t, errno, _, pid, ok := header(raw)
		if !ok || errno != 0 || pid != 0 {
			continue // not from the kernel: replies, other daemons' messages
		}
		switch {
		case t == sadb.MsgAcquire, t == sadb.MsgExpire, t == sadb.MsgSPDExpire,
			t == d.MsgNATTNewMapping && t != 0, t == d.MsgMigrate && t != 0:
		default:
			continue
		}
		m, err := sadb.Parse(d, raw)
		if err != nil {
			b.log.Warn("PF_KEY event unparsable", "type", d.MsgName(t), "err", err)
			continue
		}
		if e := b.event(m); e != nil {
			b.env.Publish(e)
		}
	}
}

// event translates one kernel message; nil for one it cannot read.
func (b *driver) event(m *sadb.Msg) kernelops.Event {
	var (
		e   kernelops.Event
		err error
	)
	switch m.Type {
	case sadb.MsgExpire:
		var x *kernelops.ExpireEvent
		x, err = b.x.expireEvent(m, b.opts.Clock.Now())
		if err == nil && x.Hard {
			b.forget(x.SA) // the kernel removed it
		}
		e = x
	case sadb.MsgAcquire:
		e, err = b.x.acquireEvent(m, func(idx uint32) (*kernelops.PolicyEntry, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return b.policyByIndex(ctx, idx)
		})
	case sadb.MsgSPDExpire:
		e, err = b.x.policyExpireEvent(m)
	case b.x.d.MsgNATTNewMapping:
		e, err = b.x.mappingEvent(m, b.knownSA)
	case b.x.d.MsgMigrate:
		e, err = b.x.migrateEvent(m)
	}
	if err != nil {
		// A partly filled acquire is still worth delivering.
		b.log.Warn("PF_KEY event", "type", b.x.d.MsgName(m.Type), "err", err)
		if a, ok := e.(*kernelops.AcquireEvent); ok && a != nil {
			return a
		}
		return nil
	}
	return e
}

func (b *driver) knownSA(spi uint32, proto kernelops.Proto) (kernelops.SAID, uint32, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k, ok := b.known[spiKey{spi, proto}]
	return k.id, k.reqid, ok
}
