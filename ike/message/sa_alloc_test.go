package message

import "testing"

// An SA payload's encoding allocates nothing when the buffer has room:
// not one transform copy per transform (a copy escapes through the
// errors that format it).
func TestSAAppendAllocations(t *testing.T) {
	sa := &SA{Proposals: []Proposal{{Num: 1, Protocol: ProtocolIKE, Transforms: []Transform{
		EncrTransform(EncrAESGCM16, 256), PRFTransform(PRFHMACSHA2256), KETransform(DHCurve25519),
	}}}}
	buf := make([]byte, 0, 256)
	if _, err := sa.appendBody(buf); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = sa.appendBody(buf) }); n != 0 {
		t.Errorf("appendBody: %v allocations, want 0", n)
	}
}
