package xfrm

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"syscall"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

const reqFlags = unix.NLM_F_REQUEST | unix.NLM_F_ACK

// requireProto refuses SA operations for an IPsec protocol the kernel
// lacks, with the kernel's own answer, before anything is sent.
func (b *Backend) requireProto(op, object string, p kernelops.Proto) error {
	if !b.k.Probed {
		return nil // unknown: let the kernel answer
	}
	have := map[kernelops.Proto]bool{kernelops.ProtoESP: b.k.ESP, kernelops.ProtoAH: b.k.AH, kernelops.ProtoIPComp: b.k.IPComp}[p]
	if have {
		return nil
	}
	detail := fmt.Sprintf("the kernel has no %s (Linux %s)", p, b.k.Release)
	if p == kernelops.ProtoESP && b.k.ESPErr != "" {
		detail += ": adding an ESP state fails with " + b.k.ESPErr
	}
	return &kernelops.Error{Backend: Name, Op: op, Object: object, Err: kernelops.ErrNotSupported,
		Errno: syscall.EPROTONOSUPPORT, Detail: detail}
}

func keyOf(id kernelops.SAID) larvalKey { return larvalKey{id.Dst, id.SPI, id.Proto} }

func (b *Backend) isLarval(id kernelops.SAID) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.larval[keyOf(id)]
	return ok
}

func (b *Backend) setLarval(id kernelops.SAID, on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if on {
		b.larval[keyOf(id)] = struct{}{}
	} else {
		delete(b.larval, keyOf(id))
	}
}

// AllocSPI implements kernelops.SAD with XFRM_MSG_ALLOCSPI: the kernel
// picks a free SPI in the range and holds it in a larval SA until AddSA
// fills it (or the kernel's acquire timeout removes it).
func (b *Backend) AllocSPI(ctx context.Context, req kernelops.SPIRequest) (uint32, error) {
	const op = "alloc SPI"
	obj := fmt.Sprintf("%s %s->%s", req.Proto, req.Src, req.Dst)
	bad := func(field, format string, args ...any) (uint32, error) {
		return 0, kernelops.Invalid(Name, op, obj, field, format, args...)
	}
	switch {
	case !req.Src.IsValid():
		return bad("Src", "missing source address")
	case !req.Dst.IsValid():
		return bad("Dst", "missing destination address")
	case req.Src.Is4() != req.Dst.Is4() || req.Src.Is4In6() || req.Dst.Is4In6():
		return bad("Dst", "mixed address families (%s, %s)", req.Src, req.Dst)
	}
	lo, hi := req.Min, req.Max
	if lo == 0 && hi == 0 {
		lo, hi = b.opts.SPIMin, b.opts.SPIMax
	}
	switch req.Proto {
	case kernelops.ProtoESP, kernelops.ProtoAH:
		if lo < 256 || lo > hi {
			return bad("Min", "SPI range %#x..%#x: want 256 <= min <= max", lo, hi)
		}
	case kernelops.ProtoIPComp:
		if lo == 0 || lo > hi || hi > 0xffff {
			return bad("Min", "CPI range %#x..%#x: want 1 <= min <= max <= 0xffff", lo, hi)
		}
	default:
		return bad("Proto", "protocol %d: want esp, ah or comp", uint8(req.Proto))
	}
	if err := b.requireProto(op, obj, req.Proto); err != nil {
		return 0, err
	}
	var spi uint32
	err := b.do(ctx, op, obj, func(mb *msgBuilder, seq uint32) error {
		mb.begin(nl.XFRM_MSG_ALLOCSPI, reqFlags, seq)
		p := mb.grow(sizeUserSPIInfo)
		putAddr(p[56:], req.Dst)
		p[76] = uint8(req.Proto)
		putAddr(p[80:], req.Src)
		putLftCfg(p[96:], kernelops.Lifetimes{})
		ne.PutUint32(p[208:], req.ReqID)
		ne.PutUint16(p[212:], famOf(req.Dst))
		p[214] = xfrmModeTunnel
		ne.PutUint32(p[224:], lo)
		ne.PutUint32(p[228:], hi)
		mb.end()
		return nil
	}, func(m nlMsg) error {
		id, _, ok := saIDOf(m.Data)
		if !ok {
			return errShort
		}
		spi = id.SPI
		return nil
	})
	if err != nil {
		// The kernel says ENOENT ("No SPI available in the requested
		// range") when the range is used up.
		if errors.Is(err, syscall.ENOENT) {
			var ke *kernelops.Error
			if errors.As(err, &ke) {
				ke.Err = kernelops.ErrNoSpace
			}
		}
		return 0, err
	}
	if spi == 0 {
		return 0, &kernelops.Error{Backend: Name, Op: op, Object: obj, Err: kernelops.ErrNoSpace, Detail: "kernel returned no SPI"}
	}
	b.setLarval(kernelops.SAID{Src: req.Src, Dst: req.Dst, SPI: spi, Proto: req.Proto}, true)
	return spi, nil
}

// validateSA runs the shared checks and this kernel's: protocol present,
// algorithms available, replay window within the kernel's limit.
func (b *Backend) validateSA(op string, sa *kernelops.SA) error {
	if err := kernelops.ValidateSA(Name, op, sa, nil); err != nil {
		return err
	}
	if err := b.requireProto(op, sa.ID.String(), sa.ID.Proto); err != nil {
		return err
	}
	if sa.ID.Proto != kernelops.ProtoIPComp && b.k.Probed {
		if err := kernelops.ValidateSA(Name, op, sa, &b.caps.Algorithms); err != nil {
			return err
		}
	}
	if sa.Dir != kernelops.DirAny {
		if err := b.caps.Require(Name, op, kernelops.CapSADir); err != nil {
			return err
		}
	}
	if sa.Offload.Mode != kernelops.OffloadNone {
		if err := b.caps.Require(Name, op, kernelops.CapOffload); err != nil {
			return err
		}
	}
	if sa.ReplayWindow > maxReplayWindow {
		return kernelops.Invalid(Name, op, sa.ID.String(), "ReplayWindow", "%d packets: the kernel's limit is %d", sa.ReplayWindow, maxReplayWindow)
	}
	if sa.ID.Proto == kernelops.ProtoIPComp && (sa.Encap != nil || sa.ESN) {
		return kernelops.Invalid(Name, op, sa.ID.String(), "ESN", "IPComp SAs carry no sequence numbers")
	}
	return nil
}

// AddSA implements kernelops.SAD. An SA whose SPI came from AllocSPI
// fills the kernel's larval SA with XFRM_MSG_UPDSA; any other is new
// (XFRM_MSG_NEWSA).
func (b *Backend) AddSA(ctx context.Context, sa *kernelops.SA) error {
	const op = "add SA"
	if err := b.validateSA(op, sa); err != nil {
		return err
	}
	return b.installSA(ctx, op, sa, false)
}

// UpdateSA implements kernelops.SAD with XFRM_MSG_UPDSA. The kernel
// updates an installed SA's lifetimes, selector and encapsulation ports;
// keys and algorithms of an SA never change.
func (b *Backend) UpdateSA(ctx context.Context, sa *kernelops.SA) error {
	const op = "update SA"
	if err := b.validateSA(op, sa); err != nil {
		return err
	}
	return b.installSA(ctx, op, sa, true)
}

// putSA sends one NEWSA/UPDSA.
func (b *Backend) putSA(ctx context.Context, op string, sa *kernelops.SA, typ uint16, off *offloadReq) error {
	return b.do(ctx, op, sa.ID.String(), func(mb *msgBuilder, seq uint32) error {
		return appendSA(mb, typ, reqFlags, seq, sa, saOpts{Offload: off, SADir: b.k.saDir()})
	}, nil)
}

// addOrFill installs sa as new or, when a larval SA holds its SPI, fills
// it. update forces UPDSA (UpdateSA).
func (b *Backend) addOrFill(ctx context.Context, op string, sa *kernelops.SA, update bool, off *offloadReq) error {
	if update {
		err := b.putSA(ctx, op, sa, nl.XFRM_MSG_UPDSA, off)
		if err == nil {
			b.setLarval(sa.ID, false)
		}
		return err
	}
	if b.isLarval(sa.ID) {
		err := b.putSA(ctx, op, sa, nl.XFRM_MSG_UPDSA, off)
		if !errors.Is(err, kernelops.ErrNotFound) {
			if err == nil {
				b.setLarval(sa.ID, false)
			}
			return err
		}
		// The larval SA timed out in the kernel: install afresh.
		b.setLarval(sa.ID, false)
	}
	err := b.putSA(ctx, op, sa, nl.XFRM_MSG_NEWSA, off)
	if errors.Is(err, kernelops.ErrExists) {
		// A larval SA from an AllocSPI this process did not see (an
		// earlier life of the daemon) is filled, not refused.
		if e, gerr := b.GetSA(ctx, sa.ID); gerr == nil && e.State == kernelops.SALarval {
			return b.putSA(ctx, op, sa, nl.XFRM_MSG_UPDSA, off)
		}
	}
	return err
}

// DeleteSA implements kernelops.SAD.
func (b *Backend) DeleteSA(ctx context.Context, id kernelops.SAID) error {
	const op = "delete SA"
	if err := kernelops.ValidateSAID(Name, op, id); err != nil {
		return err
	}
	err := b.do(ctx, op, id.String(), func(mb *msgBuilder, seq uint32) error {
		appendSAID(mb, nl.XFRM_MSG_DELSA, reqFlags, seq, id)
		return nil
	}, nil)
	if err == nil || errors.Is(err, kernelops.ErrNotFound) {
		b.setLarval(id, false)
		b.idle.Watch(id, 0)
	}
	return err
}

// GetSA implements kernelops.SAD.
func (b *Backend) GetSA(ctx context.Context, id kernelops.SAID) (*kernelops.SAEntry, error) {
	const op = "get SA"
	if err := kernelops.ValidateSAID(Name, op, id); err != nil {
		return nil, err
	}
	var e *kernelops.SAEntry
	var meta saMeta
	err := b.do(ctx, op, id.String(), func(mb *msgBuilder, seq uint32) error {
		appendSAID(mb, nl.XFRM_MSG_GETSA, reqFlags, seq, id)
		return nil
	}, func(m nlMsg) error {
		if m.Type != nl.XFRM_MSG_NEWSA {
			return nil
		}
		e = &kernelops.SAEntry{}
		return decodeSA(m.Data, e, &meta)
	})
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, &kernelops.Error{Backend: Name, Op: op, Object: id.String(), Err: kernelops.ErrNotFound}
	}
	b.finishEntry(e, &meta)
	return e, nil
}

// finishEntry fills what the wire does not say directly.
func (b *Backend) finishEntry(e *kernelops.SAEntry, m *saMeta) {
	if m.HasOffload {
		e.Offload.Device = b.linkName(m.OffloadIfIndex)
	}
}

// dumpXFRM streams a dump on a socket of its own (the caller's loop body
// may make other calls meanwhile); fn returning false stops it.
func (b *Backend) dumpXFRM(ctx context.Context, op string, typ uint16, fn func(nlMsg) (bool, error)) error {
	if err := b.checkOpen(op); err != nil {
		return err
	}
	s, err := b.pool.get()
	if err != nil {
		return b.kerr(op, "", err)
	}
	var mb msgBuilder
	seq := s.nextSeq()
	mb.begin(typ, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, seq)
	if typ == nl.XFRM_MSG_GETSA {
		mb.grow(sizeUsersaID)
	} else {
		mb.grow(sizePolicyID)
	}
	mb.end()
	var ferr error
	clean, err := s.dump(ctx, mb.buf, seq, func(m nlMsg) bool {
		var more bool
		more, ferr = fn(m)
		return more && ferr == nil
	})
	b.pool.put(s, clean && sockOK(err))
	if ferr != nil {
		return b.kerr(op, "", ferr)
	}
	return b.kerr(op, "", err)
}

// SAs implements kernelops.SAD: one dump, one reused entry, one receive
// buffer, however many SAs the kernel holds.
func (b *Backend) SAs(ctx context.Context) iter.Seq2[*kernelops.SAEntry, error] {
	return func(yield func(*kernelops.SAEntry, error) bool) {
		var e kernelops.SAEntry
		var meta saMeta
		stopped := false
		err := b.dumpXFRM(ctx, "dump SAs", nl.XFRM_MSG_GETSA, func(m nlMsg) (bool, error) {
			if m.Type != nl.XFRM_MSG_NEWSA {
				return true, nil
			}
			if err := decodeSA(m.Data, &e, &meta); err != nil {
				return false, fmt.Errorf("decode SA: %w", err)
			}
			b.finishEntry(&e, &meta)
			if !yield(&e, nil) {
				stopped = true
				return false, nil
			}
			return true, nil
		})
		if err != nil && !stopped {
			yield(nil, err)
		}
	}
}

// Usage implements kernelops.UsageReader: the same single dump as SAs,
// decoding only ids and counters.
func (b *Backend) Usage(ctx context.Context) iter.Seq2[kernelops.Usage, error] {
	return func(yield func(kernelops.Usage, error) bool) {
		var u kernelops.Usage
		stopped := false
		err := b.dumpXFRM(ctx, "read usage", nl.XFRM_MSG_GETSA, func(m nlMsg) (bool, error) {
			if m.Type != nl.XFRM_MSG_NEWSA {
				return true, nil
			}
			if err := decodeUsage(m.Data, &u); err != nil {
				return false, fmt.Errorf("decode SA: %w", err)
			}
			if !yield(u, nil) {
				stopped = true
				return false, nil
			}
			return true, nil
		})
		if err != nil && !stopped {
			yield(kernelops.Usage{}, err)
		}
	}
}

// FlushSAs implements kernelops.SAD: it deletes the SAs whose reqid lies
// in the owned range, in batches, and no other (XFRM_MSG_FLUSHSA would
// take everyone's).
func (b *Backend) FlushSAs(ctx context.Context) error {
	const op = "flush SAs"
	var ids []kernelops.SAID
	err := b.dumpXFRM(ctx, op, nl.XFRM_MSG_GETSA, func(m nlMsg) (bool, error) {
		if m.Type != nl.XFRM_MSG_NEWSA {
			return true, nil
		}
		id, reqid, ok := saOwnerInfo(m.Data)
		if ok && b.opts.Owns(reqid) {
			ids = append(ids, id)
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	ops := make([]kernelops.Op, len(ids))
	for i, id := range ids {
		ops[i] = kernelops.Op{Kind: kernelops.OpDeleteSA, SAID: id}
	}
	b.applyBatch(ctx, ops)
	for i := range ops {
		// Gone meanwhile (expired, deleted by a peer's DELETE) is fine.
		if ops[i].Err != nil && !errors.Is(ops[i].Err, kernelops.ErrNotFound) {
			return ops[i].Err
		}
		b.setLarval(ids[i], false)
	}
	return nil
}
