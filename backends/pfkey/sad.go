//go:build linux || freebsd || netbsd || darwin

package pfkey

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/keyplane/keyplane/backends/pfkey/sadb"
	"github.com/keyplane/keyplane/kernelops"
)

// larvalTTL bounds how long AllocSPI remembers an SPI it handed out; the
// kernel drops unfilled larval SAs sooner (Linux: net.core.xfrm_acq_expires,
// 30 s by default).
const larvalTTL = 10 * time.Minute

// AllocSPI implements kernelops.SAD with SADB_GETSPI, which leaves a
// larval SA in the kernel that AddSA fills with SADB_UPDATE.
//
// Linux keeps one larval SA per (source, destination, protocol, reqid):
// a second GETSPI for the same four returns the first one's SPI. The
// backend notices and refuses rather than hand out one SPI twice.
func (b *driver) AllocSPI(ctx context.Context, req kernelops.SPIRequest) (uint32, error) {
	obj := fmt.Sprintf("%s %s->%s", req.Proto, req.Src, req.Dst)
	bad := func(field, format string, args ...any) error {
		return kernelops.Invalid("", "", obj, field, format, args...)
	}
	switch {
	case !req.Src.IsValid():
		return 0, bad("Src", "missing source address")
	case !req.Dst.IsValid():
		return 0, bad("Dst", "missing destination address")
	case req.Src.Is4() != req.Dst.Is4() || req.Src.Is4In6() || req.Dst.Is4In6():
		return 0, bad("Dst", "mixed address families (%s, %s)", req.Src, req.Dst)
	}
	if satypeOf(req.Proto) == sadb.SATypeUnspec {
		return 0, bad("Proto", "protocol %d: want esp, ah or comp", uint8(req.Proto))
	}
	lo, hi := req.Min, req.Max
	if lo == 0 && hi == 0 {
		lo, hi = b.opts.SPIMin, b.opts.SPIMax
	}
	if lo < 256 || lo > hi {
		return 0, bad("Min", "SPI range %#x..%#x: want 256 <= min <= max", lo, hi)
	}
	if req.Proto == kernelops.ProtoIPComp && hi > 0xffff {
		return 0, bad("Max", "IPComp CPIs are 16 bits, not %#x", hi)
	}
	reqid, err := b.x.rq.toKernel(req.ReqID, false)
	if err != nil {
		return 0, bad("ReqID", "%v", err)
	}
	m := &sadb.Msg{Header: sadb.Header{Type: sadb.MsgGetSPI, SAType: satypeOf(req.Proto)}, Exts: []sadb.Ext{
		&sadb.SA2{Mode: sadb.ModeAny, ReqID: reqid},
		b.x.endpoint(sadb.ExtAddressSrc, req.Src),
		b.x.endpoint(sadb.ExtAddressDst, req.Dst),
		&sadb.SPIRange{Min: lo, Max: hi},
	}}
	reply, err := b.request(ctx, obj, m)
	if err != nil {
		return 0, err
	}
	s := reply.SA()
	if s == nil {
		return 0, &kernelops.Error{Object: obj, Err: errors.New("GETSPI reply without SA")}
	}
	k := larvalKey{req.Dst.String(), req.Proto, s.SPI}
	now := time.Now()
	b.mu.Lock()
	for lk, t := range b.larval {
		if now.Sub(t) > larvalTTL {
			delete(b.larval, lk)
		}
	}
	_, reused := b.larval[k]
	if !reused && s.SPI >= lo && s.SPI <= hi {
		b.larval[k] = now
	}
	b.mu.Unlock()
	if reused || s.SPI < lo || s.SPI > hi {
		if lo == hi {
			return 0, &kernelops.Error{Object: obj, Err: kernelops.ErrNoSpace,
				Detail: fmt.Sprintf("the only SPI of the range, %#x, is taken", lo)}
		}
		return 0, &kernelops.Error{Object: obj, Err: kernelops.ErrBusy,
			Detail: fmt.Sprintf("the kernel returned the larval SA %#x of an earlier allocation for the same addresses, "+
				"protocol and reqid: fill or delete it first", s.SPI)}
	}
	return s.SPI, nil
}

func (b *driver) isLarval(id kernelops.SAID) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.larval[larvalKey{id.Dst.String(), id.Proto, id.SPI}]
	return ok
}

func (b *driver) forget(id kernelops.SAID) {
	b.mu.Lock()
	delete(b.larval, larvalKey{id.Dst.String(), id.Proto, id.SPI})
	delete(b.known, spiKey{id.SPI, id.Proto})
	b.mu.Unlock()
}

func (b *driver) remember(sa *kernelops.SA) {
	b.mu.Lock()
	delete(b.larval, larvalKey{sa.ID.Dst.String(), sa.ID.Proto, sa.ID.SPI})
	if sa.Encap != nil {
		b.known[spiKey{sa.ID.SPI, sa.ID.Proto}] = knownSA{sa.ID, sa.ReqID}
	}
	b.mu.Unlock()
}

// AddSA implements kernelops.SAD: SADB_ADD, or SADB_UPDATE to fill a
// larval SA that SADB_GETSPI left.
func (b *driver) AddSA(ctx context.Context, sa *kernelops.SA) error {
	t := sadb.MsgAdd
	if b.isLarval(sa.ID) {
		t = sadb.MsgUpdate
	}
	m, kerr := b.x.saMsg(t, sa)
	if kerr != nil {
		return kerr
	}
	_, err := b.request(ctx, sa.ID.String(), m)
	if t == sadb.MsgAdd && errors.Is(err, kernelops.ErrExists) {
		// A larval SA we did not allocate in this process (before a
		// restart, say) is filled the same way.
		if e, gerr := b.getSA(ctx, sa.ID); gerr == nil && e.State == kernelops.SALarval {
			m.Type = sadb.MsgUpdate
			_, err = b.request(ctx, sa.ID.String(), m)
		}
	}
	if err != nil {
		return err
	}
	b.remember(sa)
	sa.Offload.Active = kernelops.OffloadNone
	return nil
}

// UpdateSA implements kernelops.SAD with SADB_UPDATE. On a mature SA the
// kernels change only its lifetimes (and NAT-T ports), so an update that
// changes anything else is refused rather than half applied.
func (b *driver) UpdateSA(ctx context.Context, sa *kernelops.SA) error {
	m, kerr := b.x.saMsg(sadb.MsgUpdate, sa)
	if kerr != nil {
		return kerr
	}
	cur, err := b.getSA(ctx, sa.ID)
	if err != nil {
		return err
	}
	if cur.State != kernelops.SALarval {
		if field := immutableChange(cur, sa); field != "" {
			return unsupported(sa.ID.String(), field,
				"SADB_UPDATE of a mature SA changes only its lifetimes and NAT-T ports; install a new SA instead")
		}
	}
	if _, err := b.request(ctx, sa.ID.String(), m); err != nil {
		return err
	}
	b.remember(sa)
	return nil
}

// immutableChange names the first field sa changes that SADB_UPDATE
// cannot change on a mature SA.
func immutableChange(cur *kernelops.SAEntry, sa *kernelops.SA) string {
	switch {
	case cur.Mode != sa.Mode:
		return "Mode"
	case cur.ReqID != sa.ReqID:
		return "ReqID"
	case cur.Encryption.ID != sa.Encryption.ID:
		return "Encryption.ID"
	case cur.Encryption.Key != nil && !bytes.Equal(cur.Encryption.Key, sa.Encryption.Key):
		return "Encryption.Key"
	case cur.Integrity.ID != sa.Integrity.ID:
		return "Integrity.ID"
	case cur.Integrity.Key != nil && !bytes.Equal(cur.Integrity.Key, sa.Integrity.Key):
		return "Integrity.Key"
	case cur.ReplayWindow != sa.ReplayWindow:
		return "ReplayWindow"
	case cur.ESN != sa.ESN:
		return "ESN"
	case (cur.Encap == nil) != (sa.Encap == nil):
		return "Encap"
	}
	return ""
}

// DeleteSA implements kernelops.SAD with SADB_DELETE. The kernel finds
// the SA by destination, SPI and protocol alone, so the source is checked
// first: after a migration that kept the destination, the old ID must not
// delete the moved SA.
func (b *driver) DeleteSA(ctx context.Context, id kernelops.SAID) error {
	if _, err := b.getSA(ctx, id); err != nil {
		return err
	}
	return b.deleteSA(ctx, id)
}

func (b *driver) deleteSA(ctx context.Context, id kernelops.SAID) error {
	if _, err := b.request(ctx, id.String(), b.x.saIDMsg(sadb.MsgDelete, id)); err != nil {
		return err
	}
	b.forget(id)
	return nil
}

// GetSA implements kernelops.SAD with SADB_GET, which returns the current
// lifetime (counters) and the keys.
func (b *driver) GetSA(ctx context.Context, id kernelops.SAID) (*kernelops.SAEntry, error) {
	return b.getSA(ctx, id)
}

func (b *driver) getSA(ctx context.Context, id kernelops.SAID) (*kernelops.SAEntry, error) {
	reply, err := b.request(ctx, id.String(), b.x.saIDMsg(sadb.MsgGet, id))
	if err != nil {
		return nil, err
	}
	e := &kernelops.SAEntry{}
	if err := b.x.saEntry(reply, e); err != nil {
		return nil, &kernelops.Error{Object: id.String(), Err: err}
	}
	// The kernels look SAs up by destination, SPI and protocol only; one
	// found with another source is not the SA asked for.
	if e.ID.Src != id.Src {
		return nil, &kernelops.Error{Object: id.String(), Err: kernelops.ErrNotFound,
			Detail: fmt.Sprintf("the SA with this SPI and destination has source %s", e.ID.Src)}
	}
	return e, nil
}

// SAs implements kernelops.SAD with SADB_DUMP, streamed: one entry per
// kernel message, the same *SAEntry reused. SAs of types keyplane does
// not model are skipped.
func (b *driver) SAs(ctx context.Context) iter.Seq2[*kernelops.SAEntry, error] {
	return func(yield func(*kernelops.SAEntry, error) bool) {
		var e kernelops.SAEntry
		stopped := false
		err := b.dump(ctx, sadb.MsgDump, func(m *sadb.Msg) bool {
			if b.x.saEntry(m, &e) != nil {
				return true
			}
			if !yield(&e, nil) {
				stopped = true
				return false
			}
			return true
		})
		if err != nil && !stopped {
			yield(nil, err)
		}
	}
}

// FlushSAs implements kernelops.SAD. SADB_FLUSH would empty the whole
// SAD, everyone's; this dumps and deletes only SAs whose kernel reqid is
// in the owned window (larval ones included), several at a time.
func (b *driver) FlushSAs(ctx context.Context) error {
	var ids []kernelops.SAID
	var e kernelops.SAEntry
	err := b.dump(ctx, sadb.MsgDump, func(m *sadb.Msg) bool {
		if sa2 := m.SA2(); sa2 != nil && b.x.rq.inWindow(sa2.ReqID) && b.x.saEntry(m, &e) == nil {
			ids = append(ids, e.ID)
		}
		return true
	})
	if err != nil {
		return err
	}
	return b.parallel(ctx, len(ids), func(i int) error {
		err := b.deleteSA(ctx, ids[i])             // ids come from the dump: sources are right
		if errors.Is(err, kernelops.ErrNotFound) { // expired meanwhile
			return nil
		}
		return err
	})
}

// parallel runs f(0..n-1) on up to 8 goroutines and returns the first
// error.
func (b *driver) parallel(ctx context.Context, n int, f func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  int
	)
	for range min(8, n) {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				stop := first != nil || i >= n || ctx.Err() != nil
				mu.Unlock()
				if stop {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}
