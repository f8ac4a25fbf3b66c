package xfrm

import (
	"context"
	"errors"
	"fmt"
	"sync"
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

// batchMaxMsgs and batchMaxBytes bound one chunk (one sendmsg); variables
// so BenchmarkInstallSAsBurst can size them.
var (
	batchMaxMsgs  = 1024
	batchMaxBytes = 256 << 10
)

const (
	batchRcvbuf    = 8 << 20
	batchSeqBudget = 1 << 30 // restart numbering well before wrapping
)

// batchReq is one request of a batch: an op of Apply, encoded straight
// into the chunk buffer when its chunk is built, or (build set) any other
// request. Nothing is formatted unless the request fails: the object's
// name is made for the error only.
type batchReq struct {
	op     *kernelops.Op
	typ    uint16 // the op's message type
	arg    uint32 // the policy index (add, replace) or family (delete)
	build  func(mb *msgBuilder, seq uint32) error
	object string // names a build request
	err    error
	sent   bool
}

// encode appends the request with sequence number seq.
func (r *batchReq) encode(mb *msgBuilder, seq uint32, sadir bool) error {
	if r.build != nil {
		return r.build(mb, seq)
	}
	switch op := r.op; op.Kind {
	case kernelops.OpAddSA, kernelops.OpUpdateSA:
		return appendSA(mb, r.typ, reqFlags, seq, op.SA, saOpts{SADir: sadir})
	case kernelops.OpDeleteSA:
		appendSAID(mb, r.typ, reqFlags, seq, op.SAID)
	case kernelops.OpAddPolicy, kernelops.OpReplacePolicy:
		appendPolicy(mb, r.typ, reqFlags, seq, op.Policy, r.arg)
	case kernelops.OpDeletePolicy:
		appendPolicyID(mb, r.typ, reqFlags, seq, op.PolicyID, uint16(r.arg))
	}
	return nil
}

// name is the request's object for an error.
func (r *batchReq) name() string {
	if r.op == nil {
		return r.object
	}
	switch op := r.op; op.Kind {
	case kernelops.OpAddSA, kernelops.OpUpdateSA:
		return op.SA.ID.String()
	case kernelops.OpDeleteSA:
		return op.SAID.String()
	case kernelops.OpAddPolicy, kernelops.OpReplacePolicy:
		return op.Policy.ID().String()
	case kernelops.OpDeletePolicy:
		return op.PolicyID.String()
	}
	return ""
}

// batchBufs recycles chunk buffers between batches: a chunk is up to
// batchMaxBytes plus one request.
var batchBufs = sync.Pool{New: func() any { return new([]byte) }}

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

	sadir := b.k.saDir()
	bp := batchBufs.Get().(*[]byte)
	mb := msgBuilder{buf: (*bp)[:0]}
	defer func() {
		*bp = mb.buf[:0]
		batchBufs.Put(bp)
	}()
	idx := make([]int, 0, min(len(reqs), batchMaxMsgs)) // chunk position -> reqs index
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
			if err := r.encode(&mb, seq, sadir); err != nil {
				mb.buf = mb.buf[:mark]
				r.err = b.kerr(r.name(), err)
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
				reqs[i].err = b.kerr(reqs[i].name(), err)
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
				r.err = b.kerr(r.name(), &netlinkError{e})
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
	var single []int
	b.mu.Lock()
	anyLarval := len(b.larval) > 0
	b.mu.Unlock()
	for i := range ops {
		op := &ops[i]
		op.Err = nil
		r := batchReq{op: op}
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
			r.typ = nl.XFRM_MSG_NEWSA
			if op.Kind == kernelops.OpUpdateSA || anyLarval && b.isLarval(op.SA.ID) {
				r.typ = nl.XFRM_MSG_UPDSA
			}
		case kernelops.OpDeleteSA:
			r.typ = nl.XFRM_MSG_DELSA
		case kernelops.OpAddPolicy, kernelops.OpReplacePolicy:
			r.typ = nl.XFRM_MSG_NEWPOLICY
			if op.Kind == kernelops.OpReplacePolicy {
				r.typ = nl.XFRM_MSG_UPDPOLICY
			}
			r.arg = b.newIndex(op.Policy.Dir)
		case kernelops.OpDeletePolicy:
			fams := familiesOf(op.PolicyID)
			if len(fams) != 1 {
				single = append(single, i) // family found by trying
				continue
			}
			r.typ = nl.XFRM_MSG_DELPOLICY
			r.arg = uint32(fams[0])
		default:
			op.Err = kernelops.Invalid("", "", "", "Kind", "unknown operation %d", op.Kind)
			continue
		}
		reqs = append(reqs, r)
	}
	b.runBatch(ctx, reqs)
	for k := range reqs {
		r := &reqs[k]
		op := r.op
		op.Err = r.err
		if r.err != nil {
			continue
		}
		switch op.Kind {
		case kernelops.OpAddSA, kernelops.OpUpdateSA:
			if anyLarval || op.Kind == kernelops.OpUpdateSA {
				b.setLarval(op.SA.ID, false)
			}
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
