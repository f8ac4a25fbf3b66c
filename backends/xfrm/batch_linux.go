package xfrm

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Batching: many requests go out in one sendmsg, each with its own
// sequence number. Only the last request of a chunk asks for an ack
// (NLM_F_ACK); the kernel answers the others only when they fail, handles
// a sendmsg's requests in order and queues its answers in that order, so
// the last ack closes the chunk and every error before it is matched to
// its request by sequence number. A chunk of a thousand requests costs one
// sendmsg and, when all succeed, one recvmsg — against a thousand of each
// one request at a time. The chunk size keeps the answers within the
// receive buffer.

const (
	batchMaxMsgs   = 1024
	batchMaxBytes  = 256 << 10
	batchRcvbuf    = 8 << 20
	batchSeqBudget = 1 << 30 // restart numbering well before wrapping
)

// batchReq is one request of a batch.
type batchReq struct {
	object string
	build  func(mb *msgBuilder, seq uint32) error
	err    error
	sent   bool
}

// runBatch sends reqs in chunks on one socket and sets each req's err.
func (b *driver) runBatch(ctx context.Context, reqs []batchReq) {
	if len(reqs) == 0 {
		return
	}
	fail := func(from int, err error) {
		for i := from; i < len(reqs); i++ {
			if reqs[i].err == nil && !reqs[i].sent {
				reqs[i].err = err
			}
		}
	}
	if err := b.checkOpen(); err != nil {
		fail(0, err)
		return
	}
	s, err := b.pool.get()
	if err != nil {
		fail(0, b.kerr("", err))
		return
	}
	clean := true
	defer func() { b.pool.put(s, clean) }()
	if err := s.setRcvbuf(batchRcvbuf); err != nil {
		b.log.Debug("batch: could not grow the receive buffer", "err", err)
	}
	done := s.watch(ctx)
	defer done()

	var mb msgBuilder
	idx := make([]int, 0, batchMaxMsgs) // chunk position -> reqs index
	for next := 0; next < len(reqs); {
		if err := ctx.Err(); err != nil {
			fail(next, &kernelops.Error{Err: err})
			return
		}
		if s.seq > batchSeqBudget {
			s.seq = 0
		}
		first := s.seq + 1
		mb.buf = mb.buf[:0]
		idx = idx[:0]
		last := 0
		for ; next < len(reqs) && len(idx) < batchMaxMsgs && len(mb.buf) < batchMaxBytes; next++ {
			r := &reqs[next]
			if r.err != nil {
				continue
			}
			mark := len(mb.buf)
			seq := first + uint32(len(idx))
			if err := r.build(&mb, seq); err != nil {
				mb.buf = mb.buf[:mark]
				r.err = b.kerr(r.object, err)
				continue
			}
			setAck(mb.buf[mark:], false)
			last = mark
			idx = append(idx, next)
		}
		if len(idx) == 0 {
			continue
		}
		setAck(mb.buf[last:], true)
		s.seq = first + uint32(len(idx)) - 1
		if err := s.send(mb.buf); err != nil {
			clean = false
			for _, i := range idx {
				reqs[i].err = b.kerr(reqs[i].object, err)
			}
			fail(next, b.kerr("", err))
			return
		}
		for _, i := range idx {
			reqs[i].sent = true
		}
		if err := b.collectAcks(s, reqs, idx, first); err != nil {
			clean = false
			fail(next, err)
			return
		}
	}
}

// setAck sets or clears NLM_F_ACK in the message starting at m.
func setAck(m []byte, on bool) {
	f := ne.Uint16(m[6:])
	if on {
		f |= unix.NLM_F_ACK
	} else {
		f &^= unix.NLM_F_ACK
	}
	ne.PutUint16(m[6:], f)
}

// collectAcks reads the chunk's answers until the ack of its last request:
// error answers of the others come before it.
func (b *driver) collectAcks(s *nlSock, reqs []batchReq, idx []int, first uint32) error {
	lastSeq := first + uint32(len(idx)) - 1
	for {
		buf, err := s.recv()
		if err != nil {
			// Lost answers (ENOBUFS) or a cancelled context: requests of
			// this chunk without an answer may or may not have happened.
			lost := b.kerr("", err)
			if errors.Is(err, syscall.ENOBUFS) {
				lost = &kernelops.Error{Backend: Name, Op: "batch", Err: kernelops.ErrBusy, Errno: syscall.ENOBUFS,
					Detail: "answer lost: the request may or may not have been applied; re-read the state"}
			}
			for _, i := range idx {
				if reqs[i].err == nil {
					reqs[i].err = lost
				}
			}
			return lost
		}
		for len(buf) > 0 {
			var m nlMsg
			m, buf, err = nextMsg(buf)
			if err != nil {
				return b.kerr("", err)
			}
			if m.Type != unix.NLMSG_ERROR || m.Seq < first || m.Seq > lastSeq {
				continue
			}
			e, err := parseNlError(m)
			if err != nil {
				return b.kerr("", err)
			}
			if e.Errno != 0 {
				r := &reqs[idx[m.Seq-first]]
				r.err = b.kerr(r.object, &netlinkError{e})
			}
			if m.Seq == lastSeq {
				return nil
			}
		}
	}
}

// Apply implements kernelops.Batcher. SA installs with an offload request
// need several steps each and go one at a time after the batch; all other
// operations go out in chunks of many requests per syscall.
func (b *driver) Apply(ctx context.Context, ops []kernelops.Op) error {
	b.applyBatch(ctx, ops)
	return kernelops.BatchResult(ops)
}

func (b *driver) applyBatch(ctx context.Context, ops []kernelops.Op) {
	reqs := make([]batchReq, 0, len(ops))
	pos := make([]int, 0, len(ops)) // reqs index -> ops index
	var single []int
	sadir := b.k.saDir()
	for i := range ops {
		op := &ops[i]
		op.Err = nil
		var r batchReq
		switch op.Kind {
		case kernelops.OpAddSA, kernelops.OpUpdateSA:
			if err := b.validateSA(op.SA); err != nil {
				op.Err = err
				continue
			}
			if op.SA.Offload.Mode != kernelops.OffloadNone {
				single = append(single, i)
				continue
			}
			typ := uint16(nl.XFRM_MSG_NEWSA)
			if op.Kind == kernelops.OpUpdateSA || b.isLarval(op.SA.ID) {
				typ = nl.XFRM_MSG_UPDSA
			}
			sa := op.SA
			r = batchReq{object: sa.ID.String(), build: func(mb *msgBuilder, seq uint32) error {
				return appendSA(mb, typ, reqFlags, seq, sa, saOpts{SADir: sadir})
			}}
		case kernelops.OpDeleteSA:
			id := op.SAID
			r = batchReq{object: id.String(), build: func(mb *msgBuilder, seq uint32) error {
				appendSAID(mb, nl.XFRM_MSG_DELSA, reqFlags, seq, id)
				return nil
			}}
		case kernelops.OpAddPolicy, kernelops.OpReplacePolicy:
			typ := uint16(nl.XFRM_MSG_NEWPOLICY)
			if op.Kind == kernelops.OpReplacePolicy {
				typ = nl.XFRM_MSG_UPDPOLICY
			}
			p := op.Policy
			index := b.newIndex(p.Dir)
			r = batchReq{object: p.ID().String(), build: func(mb *msgBuilder, seq uint32) error {
				appendPolicy(mb, typ, reqFlags, seq, p, index)
				return nil
			}}
		case kernelops.OpDeletePolicy:
			fams := familiesOf(op.PolicyID)
			if len(fams) != 1 {
				single = append(single, i) // family found by trying
				continue
			}
			id := op.PolicyID
			r = batchReq{object: id.String(), build: func(mb *msgBuilder, seq uint32) error {
				appendPolicyID(mb, nl.XFRM_MSG_DELPOLICY, reqFlags, seq, id, fams[0])
				return nil
			}}
		default:
			op.Err = kernelops.Invalid("", "", "", "Kind", "unknown operation %d", op.Kind)
			continue
		}
		reqs = append(reqs, r)
		pos = append(pos, i)
	}
	b.runBatch(ctx, reqs)
	for k, r := range reqs {
		op := &ops[pos[k]]
		op.Err = r.err
		if r.err != nil {
			continue
		}
		switch op.Kind {
		case kernelops.OpAddSA, kernelops.OpUpdateSA:
			b.setLarval(op.SA.ID, false)
			op.SA.Offload.Active = kernelops.OffloadNone
		case kernelops.OpDeleteSA:
			b.setLarval(op.SAID, false)
		case kernelops.OpAddPolicy, kernelops.OpReplacePolicy:
			b.rememberAction(op.Policy)
		case kernelops.OpDeletePolicy:
			b.forgetAction(op.PolicyID)
		}
	}
	for _, i := range single {
		op := &ops[i]
		if err := ctx.Err(); err != nil {
			op.Err = err
			continue
		}
		switch op.Kind {
		case kernelops.OpAddSA:
			op.Err = b.installSA(ctx, op.SA, false)
		case kernelops.OpUpdateSA:
			op.Err = b.installSA(ctx, op.SA, true)
		case kernelops.OpDeletePolicy:
			op.Err = b.DeletePolicy(ctx, op.PolicyID)
		default:
			op.Err = fmt.Errorf("internal: %s not batched", op.Kind)
		}
	}
}
