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
// lacks, with the kernel's own answer, before anything is sent. object
// names what was refused; it is called only then (batches check every SA).
func (b *driver) requireProto(object func() string, p kernelops.Proto) error {
	if !b.k.Probed {
		return nil // unknown: let the kernel answer
	}
	var have bool
	switch p {
	case kernelops.ProtoESP:
		have = b.k.ESP
	case kernelops.ProtoAH:
		have = b.k.AH
	case kernelops.ProtoIPComp:
		have = b.k.IPComp
	}
	if have {
		return nil
	}
	detail := fmt.Sprintf("the kernel has no %s (Linux %s)", p, b.k.Release)
	if p == kernelops.ProtoESP && b.k.ESPErr != "" {
		detail += ": adding an ESP state fails with " + b.k.ESPErr
	}
	return &kernelops.Error{Object: object(), Err: kernelops.ErrNotSupported,
		Errno: syscall.EPROTONOSUPPORT, Detail: detail}
}

func keyOf(id kernelops.SAID) larvalKey { return larvalKey{id.Dst, id.SPI, id.Proto} }

func (b *driver) isLarval(id kernelops.SAID) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.larval[keyOf(id)]
	return ok
}

func (b *driver) setLarval(id kernelops.SAID, on bool) {
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
func (b *driver) AllocSPI(ctx context.Context, req kernelops.SPIRequest) (uint32, error) {
	obj := fmt.Sprintf("%s %s->%s", req.Proto, req.Src, req.Dst)
	lo, hi := req.Min, req.Max // resolved by the front end
	if err := b.requireProto(func() string { return obj }, req.Proto); err != nil {
		return 0, err
	}
	var spi uint32
	err := b.do(ctx, obj, func(mb *msgBuilder, seq uint32) error {
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
		return 0, &kernelops.Error{Object: obj, Err: kernelops.ErrNoSpace, Detail: "kernel returned no SPI"}
	}
	b.setLarval(kernelops.SAID{Src: req.Src, Dst: req.Dst, SPI: spi, Proto: req.Proto}, true)
	return spi, nil
}

// validateSA is this kernel's own check beyond the front end's: the
// IPsec protocol present, no sequence numbers on IPComp.
func (b *driver) validateSA(sa *kernelops.SA) error {
	if err := b.requireProto(sa.ID.String, sa.ID.Proto); err != nil {
		return err
	}
	if sa.ID.Proto == kernelops.ProtoIPComp && (sa.Encap != nil || sa.ESN) {
		return kernelops.Invalid("", "", sa.ID.String(), "ESN", "IPComp SAs carry no sequence numbers")
	}
	return nil
}

// AddSA implements kernelops.SAD. An SA whose SPI came from AllocSPI
// fills the kernel's larval SA with XFRM_MSG_UPDSA; any other is new
// (XFRM_MSG_NEWSA).
func (b *driver) AddSA(ctx context.Context, sa *kernelops.SA) error {
	if err := b.validateSA(sa); err != nil {
		return err
	}
	return b.installSA(ctx, sa, false)
}

// UpdateSA implements kernelops.SAD with XFRM_MSG_UPDSA. The kernel
// updates an installed SA's lifetimes, selector and encapsulation ports;
// keys and algorithms of an SA never change.
func (b *driver) UpdateSA(ctx context.Context, sa *kernelops.SA) error {
	if err := b.validateSA(sa); err != nil {
		return err
	}
	return b.installSA(ctx, sa, true)
}

// putSA sends one NEWSA/UPDSA.
func (b *driver) putSA(ctx context.Context, sa *kernelops.SA, typ uint16, off *offloadReq) error {
	return b.do(ctx, sa.ID.String(), func(mb *msgBuilder, seq uint32) error {
		return appendSA(mb, typ, reqFlags, seq, sa, saOpts{Offload: off, SADir: b.k.saDir()})
	}, nil)
}

// addOrFill installs sa as new or, when a larval SA holds its SPI, fills
// it. update forces UPDSA (UpdateSA).
func (b *driver) addOrFill(ctx context.Context, sa *kernelops.SA, update bool, off *offloadReq) error {
	if update {
		err := b.putSA(ctx, sa, nl.XFRM_MSG_UPDSA, off)
		if err == nil {
			b.setLarval(sa.ID, false)
		}
		return err
	}
	if b.isLarval(sa.ID) {
		err := b.putSA(ctx, sa, nl.XFRM_MSG_UPDSA, off)
		if !errors.Is(err, kernelops.ErrNotFound) {
			if err == nil {
				b.setLarval(sa.ID, false)
			}
			return err
		}
		// The larval SA timed out in the kernel: install afresh.
		b.setLarval(sa.ID, false)
	}
	err := b.putSA(ctx, sa, nl.XFRM_MSG_NEWSA, off)
	if errors.Is(err, kernelops.ErrExists) {
		// A larval SA from an AllocSPI this process did not see (an
		// earlier life of the daemon) is filled, not refused.
		if e, gerr := b.GetSA(ctx, sa.ID); gerr == nil && e.State == kernelops.SALarval {
			return b.putSA(ctx, sa, nl.XFRM_MSG_UPDSA, off)
		}
	}
	return err
}

// DeleteSA implements kernelops.SAD.
func (b *driver) DeleteSA(ctx context.Context, id kernelops.SAID) error {
	err := b.do(ctx, id.String(), func(mb *msgBuilder, seq uint32) error {
		appendSAID(mb, nl.XFRM_MSG_DELSA, reqFlags, seq, id)
		return nil
	}, nil)
	if err == nil || errors.Is(err, kernelops.ErrNotFound) {
		b.setLarval(id, false)
	}
	return err
}

// GetSA implements kernelops.SAD.
func (b *driver) GetSA(ctx context.Context, id kernelops.SAID) (*kernelops.SAEntry, error) {
	var e *kernelops.SAEntry
	var meta saMeta
	err := b.do(ctx, id.String(), func(mb *msgBuilder, seq uint32) error {
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
		return nil, &kernelops.Error{Object: id.String(), Err: kernelops.ErrNotFound}
	}
	b.finishEntry(e, &meta)
	return e, nil
}

// finishEntry fills what the wire does not say directly.
func (b *driver) finishEntry(e *kernelops.SAEntry, m *saMeta) {
	if m.HasOffload {
		e.Offload.Device = b.linkName(m.OffloadIfIndex)
	}
}

// dumpXFRM streams a dump on a socket of its own (the caller's loop body
// may make other calls meanwhile); fn returning false stops it.
func (b *driver) dumpXFRM(ctx context.Context, typ uint16, fn func(nlMsg) (bool, error)) error {
	s, err := b.pool.get()
	if err != nil {
		return b.kerr("", err)
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
		return b.kerr("", ferr)
	}
	return b.kerr("", err)
}

// SAs implements kernelops.SAD: one dump, one reused entry, one receive
// buffer, however many SAs the kernel holds.
func (b *driver) SAs(ctx context.Context) iter.Seq2[*kernelops.SAEntry, error] {
	return func(yield func(*kernelops.SAEntry, error) bool) {
		var e kernelops.SAEntry
		var meta saMeta
		stopped := false
		err := b.dumpXFRM(ctx, nl.XFRM_MSG_GETSA, func(m nlMsg) (bool, error) {
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
func (b *driver) Usage(ctx context.Context) iter.Seq2[kernelops.Usage, error] {
	return func(yield func(kernelops.Usage, error) bool) {
		var u kernelops.Usage
		stopped := false
		err := b.dumpXFRM(ctx, nl.XFRM_MSG_GETSA, func(m nlMsg) (bool, error) {
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
func (b *driver) FlushSAs(ctx context.Context) error {
	var ids []kernelops.SAID
	err := b.dumpXFRM(ctx, nl.XFRM_MSG_GETSA, func(m nlMsg) (bool, error) {
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
