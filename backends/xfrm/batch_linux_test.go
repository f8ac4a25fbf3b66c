package xfrm

import (
	"testing"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/vishvananda/netlink/nl"
)

// benchSAReqs is n NEWSA requests of a batch, as applyBatch makes them.
func benchSAReqs(n int) []batchReq {
	key := make([]byte, 20)
	ops := make([]kernelops.Op, n)
	reqs := make([]batchReq, n)
	for i := range ops {
		ops[i] = kernelops.Op{Kind: kernelops.OpAddSA, SA: benchSA(i, kernelops.DefaultReqIDMin, key)}
		reqs[i] = batchReq{op: &ops[i], typ: nl.XFRM_MSG_NEWSA}
	}
	return reqs
}

// TestBatchEncodeAllocations: a batch's requests are encoded straight into
// the chunk buffer, so once it has grown no SA allocates; the encoded
// message is the one appendSA makes.
func TestBatchEncodeAllocations(t *testing.T) {
	reqs := benchSAReqs(1000)
	var mb msgBuilder
	encodeAll := func() {
		mb.buf = mb.buf[:0]
		for i := range reqs {
			if err := reqs[i].encode(&mb, uint32(i+1), false); err != nil {
				t.Fatal(err)
			}
		}
	}
	encodeAll()
	if n := testing.AllocsPerRun(20, encodeAll); n != 0 {
		t.Fatalf("encoding 1000 SAs: %.0f allocations, want none", n)
	}
	var want msgBuilder
	if err := appendSA(&want, nl.XFRM_MSG_NEWSA, reqFlags, 1, reqs[0].op.SA, saOpts{}); err != nil {
		t.Fatal(err)
	}
	if got := mb.buf[:len(want.buf)]; string(got) != string(want.buf) {
		t.Fatalf("first request encoded as\n%x\nwant\n%x", got, want.buf)
	}
	if r := reqs[1].name(); r != reqs[1].op.SA.ID.String() {
		t.Fatalf("request named %q, want its SA id", r)
	}
}

// BenchmarkEncodeSAs: the Go side of a 10,000-SA batch without the kernel
// (host): encoding into a reused chunk buffer.
func BenchmarkEncodeSAs(b *testing.B) {
	reqs := benchSAReqs(benchSAs)
	var mb msgBuilder
	b.ReportAllocs()
	for b.Loop() {
		mb.buf = mb.buf[:0]
		for i := range reqs {
			if err := reqs[i].encode(&mb, uint32(i+1), false); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchSAs), "ns/SA")
}
