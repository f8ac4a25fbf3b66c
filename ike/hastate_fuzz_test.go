package ike

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/ike/message"
	"github.com/keyplane/keyplane/kernelops"
)

// haRecord is what a standby decodes from etcd for one IKE SA: the IKE
// record and its children's (package ha reads them one key each; the
// fuzzer gets them in one document).
type haRecord struct {
	IKE      HAIKE     `json:"ike"`
	Children []HAChild `json:"children"`
}

// FuzzRestore feeds decoded HA records to Restore: whatever a record
// holds (a sealed record opens only under the cluster key, but a bug on
// the active node or an older version can still write nonsense), the
// standby must not panic, a refused record must leave nothing installed
// and no IKE SA behind, and the SA indexes must stay consistent.
func FuzzRestore(f *testing.F) {
	lo := netip.MustParseAddr("127.0.0.1")
	_, sb := pairSides(f)
	good := haRecord{
		IKE: HAIKE{Conn: "b", SPIi: 0x1111111111111111, SPIr: 0x2222222222222222,
			Local: netip.AddrPortFrom(lo, sb.port), Remote: netip.AddrPortFrom(lo, 500),
			Suite:  ikecrypto.IKESuite{Encr: message.EncrAESGCM16, EncrKeyBits: 128, PRF: message.PRFHMACSHA2256, DH: message.DHCurve25519},
			Keys:   HAIKEKeys{SKd: make([]byte, 32), SKei: make([]byte, 20), SKer: make([]byte, 20), SKpi: make([]byte, 32), SKpr: make([]byte, 32)},
			NextID: 3, PeerNext: 4, PeerIDType: uint8(message.IDFQDN), PeerID: []byte("a.example.org")},
		Children: []HAChild{{Name: "b-net", ReqID: kernelops.DefaultReqIDMin + 1, Mode: kernelops.ModeTunnel,
			InSPI: 0xc0000001, OutSPI: 0xc0000002, Local: lo, Remote: lo,
			LocalTS:  []HATS{{Start: netip.MustParseAddr("10.2.0.0"), End: netip.MustParseAddr("10.2.255.255"), EPort: 65535}},
			RemoteTS: []HATS{{Start: netip.MustParseAddr("10.1.0.0"), End: netip.MustParseAddr("10.1.255.255"), EPort: 65535}},
			Suite:    ikecrypto.ChildSuite{Encr: message.EncrAESGCM16, EncrKeyBits: 128},
			Keys:     HAChildKeys{EncrI: make([]byte, 20), EncrR: make([]byte, 20)}}},
	}
	seed := func(r haRecord) {
		b, err := json.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(good)
	r := good
	r.Children = append([]HAChild{}, good.Children...)
	r.Children[0].Mode = kernelops.ModeTransport
	r.Children[0].Encap = &kernelops.Encap{SrcPort: 4500, DstPort: 4500}
	seed(r)
	r = good
	r.IKE.Initiator = true
	r.Children = append([]HAChild{}, good.Children...)
	r.Children[0].LocalTS = nil
	seed(r)
	r = good
	r.Children = []HAChild{good.Children[0], good.Children[0]} // the same SPIs twice
	seed(r)
	r = good
	r.IKE.Local = netip.AddrPort{}
	seed(r)
	f.Add([]byte(`{"ike":{"conn":"b","suite":{}},"children":[{"name":"b-net","local_ts":[{}]}]}`))

	p := newPeer(f, "b", sb.config(f, "b"), withLogLevel(slog.LevelError+4))
	f.Fuzz(func(t *testing.T, data []byte) {
		var rec haRecord
		if json.Unmarshal(data, &rec) != nil || len(rec.Children) > 8 {
			return
		}
		children := make([]*HAChild, len(rec.Children))
		for i := range rec.Children {
			children[i] = &rec.Children[i]
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := p.e.Restore(ctx, &rec.IKE, children, RestoreOptions{SeqMargin: 100})
		if err != nil && !errors.Is(err, ErrRestore) {
			t.Fatalf("Restore: %v, want a *RestoreError", err)
		}
		// Some children refused: the IKE SA stays with the others, each
		// of them whole in the dataplane (two SAs), nothing of the rest.
		var ce *ChildrenError
		partial := errors.As(err, &ce)
		installed := 0
		for _, serr := range p.b.SAs(ctx) {
			if serr != nil {
				t.Fatal(serr)
			}
			installed++
		}
		var ierr string
		var live, restored int
		if cerr := p.e.call(ctx, func() {
			ierr = p.e.indexErr()
			for _, sa := range p.e.sortedSAsWhere(nil) {
				if err != nil && !partial {
					live++
				}
				restored += len(sa.children)
				sa.destroy("fuzz: next input")
			}
		}); cerr != nil {
			t.Fatal(cerr)
		}
		if installed != 2*restored {
			t.Fatalf("%d SAs in the dataplane for %d restored children (Restore: %v)", installed, restored, err)
		}
		if ierr != "" {
			t.Fatalf("indexes after Restore (err %v): %s", err, ierr)
		}
		if live > 0 {
			t.Fatalf("Restore refused the record (%v) but left %d IKE SA(s)", err, live)
		}
		n := 0
		for _, serr := range p.b.SAs(ctx) {
			if serr != nil {
				t.Fatal(serr)
			}
			n++
		}
		if n > 0 {
			t.Fatalf("%d SAs left in the dataplane (Restore: %v, or not removed with the IKE SA)", n, err)
		}
	})
}
