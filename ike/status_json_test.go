package ike

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// sameAsMarshal checks that AppendJSON writes what json.Marshal does, or
// fails as it does.
func sameAsMarshal(t *testing.T, v interface{ AppendJSON([]byte) ([]byte, error) }) {
	t.Helper()
	want, werr := json.Marshal(v)
	got, err := v.AppendJSON([]byte("prefix"))
	if werr != nil {
		require.Error(t, err)
		return
	}
	require.NoError(t, err)
	require.Equal(t, "prefix"+string(want), string(got))
}

// TestAppendJSON: a listing's entries as the control socket writes them
// are what encoding/json makes of them: plain and escaped text, zero and
// zoned times, times json refuses, no children and nil children.
func TestAppendJSON(t *testing.T) {
	est := time.Date(2026, 12, 5, 21, 0, 0, 123456789, time.UTC)
	ch := ChildInfo{ID: 7, Name: "net", IKE: "gw", IKEID: 3, State: ChildInstalled, Mode: "tunnel", ReqID: 0x1000,
		SPIIn: "c0ffee01", SPIOut: "c0ffee02", Suite: "AES_GCM_16/128", Encap: true, Offload: "no",
		LocalTS: "10.1.0.0/16", RemoteTS: "10.2.0.0/16[6/0-1023]", Local: "192.0.2.1", Remote: "2001:db8::1",
		BytesIn: 1 << 40, PacketsIn: 3, BytesOut: 4, PacketsOut: 5, RekeyNeeded: true, Established: est}
	weird := ch
	weird.Name, weird.IKE, weird.CounterErr = "a\"b\\c<d>&e\x01\n\t\u2028é\xff", "日本", "SA esp: not found"
	zoned := ch
	zoned.Established = est.In(time.FixedZone("x", 5*3600+30*60))
	odd := ch
	odd.Established = est.In(time.FixedZone("y", 17))
	future := ch
	future.Established = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	zero := ChildInfo{}
	omitted := ch
	omitted.CountersOmitted, omitted.BytesIn, omitted.PacketsIn, omitted.BytesOut, omitted.PacketsOut = true, 0, 0, 0, 0
	for _, c := range []ChildInfo{ch, weird, zoned, odd, future, zero, omitted} {
		sameAsMarshal(t, &c)
	}
	for _, d := range []Deleted{{}, {IKEID: 7}, {IKEID: 1<<32 - 1, ChildID: 1<<32 - 1}} {
		sameAsMarshal(t, &d)
	}
	sa := IKESAInfo{ID: 3, Name: "gw", State: IKEEstablished, Role: "initiator", SPIi: "0011223344556677", SPIr: "8899aabbccddeeff",
		Local: "192.0.2.1:500", Remote: "[2001:db8::1]:4500", Suite: "AES_GCM_16/128", NATRemote: true, Established: est,
		Children: []ChildInfo{ch, weird}}
	noKids := sa
	noKids.Children, noKids.Suite = []ChildInfo{}, ""
	nilKids := sa
	nilKids.Children = nil
	badKid := sa
	badKid.Children = []ChildInfo{ch, future}
	for _, s := range []IKESAInfo{sa, noKids, nilKids, badKid, {}} {
		sameAsMarshal(t, &s)
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("net", "10.1.0.0/16", "a\"<>&\u2028\xff\x00", uint64(1), int64(0), 0)
	f.Add("", "", "", uint64(0), int64(1764968400123456789), 3600)
	f.Fuzz(func(t *testing.T, name, ts, other string, n uint64, nanos int64, off int) {
		var est time.Time
		if nanos != 0 {
			est = time.Unix(0, nanos).In(time.FixedZone("z", off%(30*3600)))
		}
		c := ChildInfo{ID: uint32(n), Name: name, IKE: other, State: ChildState(other), Mode: ts, LocalTS: ts, RemoteTS: other,
			BytesIn: n, PacketsOut: n >> 3, Encap: n&1 == 1, CounterErr: other, Established: est}
		sameAsMarshal(t, &c)
		s := IKESAInfo{ID: uint32(n >> 7), Name: other, State: IKEState(name), Local: ts, Suite: other, Established: est, Children: []ChildInfo{c}}
		sameAsMarshal(t, &s)
	})
}

// BenchmarkChildJSON: one listed child as the control socket writes it,
// by encoding/json (marshal) and by AppendJSON (append).
func BenchmarkChildJSON(b *testing.B) {
	c := ChildInfo{ID: 7, Name: "t123-net", IKE: "t123", IKEID: 3, State: ChildInstalled, Mode: "tunnel", ReqID: 0x1000,
		SPIIn: "c0ffee01", SPIOut: "c0ffee02", Suite: "AES_GCM_16/128", Offload: "no",
		LocalTS: "10.1.0.124/32", RemoteTS: "10.2.0.124/32", Local: "127.0.0.1", Remote: "127.0.0.1",
		BytesIn: 1 << 20, PacketsIn: 3000, Established: time.Now()}
	b.Run("enc=marshal", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			j, err := json.Marshal(&c)
			if err != nil {
				b.Fatal(err)
			}
			buf = append(buf[:0], j...)
		}
	})
	b.Run("enc=append", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			var err error
			if buf, err = c.AppendJSON(buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
