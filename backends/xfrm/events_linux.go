package xfrm

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Events come from two multicast sockets opened at the first Subscribe:
// one XFRM socket (acquire, expire, sa, policy, aevents, report, migrate,
// mapping) and one rtnetlink socket (links, IPv4/IPv6 addresses and
// routes). Each has a large receive buffer; when the kernel still drops
// notifications for a full buffer, the next read fails with ENOBUFS and
// every subscriber gets an OverrunEvent, and reading goes on.

// xfrmGroups are the XFRM multicast groups the event socket joins. The SA
// and policy groups carry no kernelops event, but listening to them means
// a burst of SA/policy changes that overruns the socket is reported too.
var xfrmGroups = groupMask(nl.XFRMNLGRP_ACQUIRE, nl.XFRMNLGRP_EXPIRE, nl.XFRMNLGRP_SA, nl.XFRMNLGRP_POLICY,
	nl.XFRMNLGRP_AEVENTS, nl.XFRMNLGRP_REPORT, nl.XFRMNLGRP_MIGRATE, nl.XFRMNLGRP_MAPPING)

const rtGroups = unix.RTMGRP_LINK | unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR |
	unix.RTMGRP_IPV4_ROUTE | unix.RTMGRP_IPV6_ROUTE

func groupMask(groups ...int) uint32 {
	var m uint32
	for _, g := range groups {
		m |= 1 << (g - 1)
	}
	return m
}

// Overrun sources.
const (
	sourceXFRM = "xfrm netlink socket"
	sourceRT   = "rtnetlink socket"
)

type eventReaders struct {
	b      *driver
	xs, rs *nlSock
	wg     sync.WaitGroup
	closed atomic.Bool
	hold   atomic.Pointer[chan struct{}] // test hook: readers wait while set
	links  map[int]linkInfo              // last state per link; rtnetlink reader only
}

// StartEvents implements kernelops.EventStarter: the XFRM and rtnetlink
// event sockets open with the first subscriber.
func (b *driver) StartEvents(ctx context.Context) error {
	b.evMu.Lock()
	defer b.evMu.Unlock()
	if b.ev != nil {
		return nil
	}
	if b.closed.Load() {
		return &kernelops.Error{Err: kernelops.ErrClosed}
	}
	xs, err := openNLSock(b.ns, unix.NETLINK_XFRM, xfrmGroups, b.rcvbuf)
	if err != nil {
		return b.kerr("xfrm events", err)
	}
	rs, err := openNLSock(b.ns, unix.NETLINK_ROUTE, rtGroups, b.rcvbuf)
	if err != nil {
		xs.close()
		return b.kerr("rtnetlink events", err)
	}
	r := &eventReaders{b: b, xs: xs, rs: rs, links: map[int]linkInfo{}}
	// Seed link states so only changes are reported.
	if links, err := b.rt.LinkList(); err == nil {
		for _, l := range links {
			a := l.Attrs()
			li := linkInfo{Index: a.Index, Name: a.Name, Flags: uint32(a.RawFlags)}
			r.links[a.Index] = li
			b.setLinkName(a.Index, a.Name)
		}
	}
	r.wg.Add(2)
	go r.readLoop(xs, sourceXFRM, r.handleXFRM)
	go r.readLoop(rs, sourceRT, r.handleRT)
	b.ev = r
	return nil
}

func (r *eventReaders) close() {
	r.closed.Store(true)
	if h := r.hold.Swap(nil); h != nil {
		close(*h)
	}
	r.xs.close()
	r.rs.close()
	r.wg.Wait()
}

// pause stops the readers before their next read until resume is
// called: the overrun test uses it to let the kernel fill the socket.
func (r *eventReaders) pause() (resume func()) {
	ch := make(chan struct{})
	r.hold.Store(&ch)
	return func() {
		if r.hold.CompareAndSwap(&ch, nil) {
			close(ch)
		}
	}
}

func (r *eventReaders) readLoop(s *nlSock, source string, handle func(nlMsg)) {
	defer r.wg.Done()
	log := r.b.log.With("source", source)
	for {
		if h := r.hold.Load(); h != nil {
			<-*h
		}
		buf, err := s.recv()
		if r.closed.Load() {
			return
		}
		if err != nil {
			switch {
			case errors.Is(err, syscall.ENOBUFS):
				// The kernel dropped notifications: say so, keep reading.
				log.Warn("event socket overrun: notifications lost")
				r.b.env.Overrun(-1, source)
			case errors.Is(err, os.ErrClosed):
				return
			default:
				log.Warn("event socket read failed", "err", err)
				time.Sleep(50 * time.Millisecond)
			}
			continue
		}
		for len(buf) > 0 {
			var m nlMsg
			m, buf, err = nextMsg(buf)
			if err != nil {
				log.Warn("malformed netlink notification", "err", err)
				break
			}
			handle(m)
		}
	}
}

// decodeXFRMEvent turns an XFRM notification into a kernelops event, or
// nil for notifications kernelops has no event for.
func decodeXFRMEvent(m nlMsg, now time.Time) (kernelops.Event, error) {
	switch m.Type {
	case nl.XFRM_MSG_ACQUIRE:
		return decodeAcquire(m.Data)
	case nl.XFRM_MSG_EXPIRE:
		return decodeExpire(m.Data, now)
	case nl.XFRM_MSG_POLEXPIRE:
		return decodePolExpire(m.Data)
	case nl.XFRM_MSG_MAPPING:
		return decodeMapping(m.Data)
	case nl.XFRM_MSG_MIGRATE:
		return decodeMigrate(m.Data)
	case nl.XFRM_MSG_NEWAE:
		var ae aevent
		if err := decodeAevent(m.Data, &ae); err != nil {
			return nil, err
		}
		if ae.Flags&(xfrmAECR|xfrmAECE) == 0 {
			// XFRM_AE_CU echoes a NEWAE write (keyplane's own, or an HA
			// peer's): not a change of the SA's traffic state.
			return nil, nil
		}
		return &kernelops.SyncEvent{SA: ae.SA, ReqID: ae.ReqID, State: ae.State, Reason: syncReason(ae.Flags)}, nil
	}
	return nil, nil
}

func (r *eventReaders) handleXFRM(m nlMsg) {
	ev, err := decodeXFRMEvent(m, r.b.opts.Clock.Now())
	if err != nil {
		r.b.log.Warn("undecodable XFRM notification", "type", m.Type, "err", err)
		return
	}
	if ev != nil {
		r.b.env.Publish(ev)
	}
}

func (r *eventReaders) handleRT(m nlMsg) {
	b := r.b
	switch m.Type {
	case unix.RTM_NEWADDR, unix.RTM_DELADDR:
		ev, err := decodeAddrMsg(m.Type, m.Data)
		if err != nil {
			b.log.Debug("undecodable address notification", "err", err)
			return
		}
		if ev.IfName == "" {
			ev.IfName = b.linkName(ev.IfIndex)
		}
		b.env.Publish(ev)
	case unix.RTM_NEWLINK, unix.RTM_DELLINK:
		li, err := decodeLinkMsg(m.Data)
		if err != nil {
			b.log.Debug("undecodable link notification", "err", err)
			return
		}
		old, known := r.links[li.Index]
		if m.Type == unix.RTM_DELLINK {
			delete(r.links, li.Index)
			b.setLinkName(li.Index, "")
			if li.Name == "" {
				li.Name = old.Name
			}
			b.env.Publish(&kernelops.LinkEvent{IfIndex: li.Index, IfName: li.Name, Deleted: true})
			return
		}
		if li.Name == "" {
			li.Name = old.Name
		}
		r.links[li.Index] = li
		b.setLinkName(li.Index, li.Name)
		if known && old.up() == li.up() && old.Name == li.Name {
			return // a change kernelops does not report (MTU, stats, ...)
		}
		b.env.Publish(&kernelops.LinkEvent{IfIndex: li.Index, IfName: li.Name, Up: li.up()})
	case unix.RTM_NEWROUTE, unix.RTM_DELROUTE:
		ev, err := decodeRouteMsg(m.Type, m.Data)
		if err != nil {
			b.log.Debug("undecodable route notification", "err", err)
			return
		}
		if ev != nil {
			b.env.Publish(ev)
		}
	}
}
