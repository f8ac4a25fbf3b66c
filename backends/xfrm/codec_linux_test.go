package xfrm

import (
	"bytes"
	"net/netip"
	"reflect"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Codec tests: what the builders write, the decoders read back; the
// decoders of kernel-only messages (acquire, expire, mapping, migrate,
// aevent, rtnetlink) are fed messages laid out as the kernel lays them.

func mp(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ma(s string) netip.Addr   { return netip.MustParseAddr(s) }

// body returns the payload of the single message mb holds.
func body(t *testing.T, mb *msgBuilder) nlMsg {
	t.Helper()
	m, rest, err := nextMsg(mb.buf)
	if err != nil || len(rest) != 0 {
		t.Fatalf("builder produced %d bytes that do not parse as one message: %v", len(mb.buf), err)
	}
	if int(m.Len) != len(mb.buf) {
		t.Fatalf("message length %d, buffer %d", m.Len, len(mb.buf))
	}
	return m
}

func TestSARoundTrip(t *testing.T) {
	tests := []struct {
		name string
		sa   kernelops.SA
	}{
		{"gcm tunnel v4", kernelops.SA{
			ID:   kernelops.SAID{Src: ma("192.0.2.1"), Dst: ma("198.51.100.1"), SPI: 0xc0001234, Proto: kernelops.ProtoESP, Mark: kernelops.Mark{Value: 7, Mask: 0xff}},
			Mode: kernelops.ModeTunnel, ReqID: 0x4b500001, ReplayWindow: 32,
			Encryption: kernelops.Encryption{ID: iana.EncrAESGCM16, KeyBits: 256, Key: bytes.Repeat([]byte{1}, 36)},
			Lifetime: kernelops.Lifetimes{Soft: kernelops.Limits{Bytes: 1000, Packets: 10, AddTime: time.Hour},
				Hard: kernelops.Limits{Bytes: 2000, Packets: 20, AddTime: 2 * time.Hour, UseTime: time.Minute}},
			Encap: &kernelops.Encap{SrcPort: 4500, DstPort: 4501}, IfID: 9,
		}},
		{"cbc sha256 transport v6 with selector", kernelops.SA{
			ID:   kernelops.SAID{Src: ma("2001:db8::1"), Dst: ma("2001:db8::2"), SPI: 0x1000, Proto: kernelops.ProtoESP},
			Mode: kernelops.ModeTransport, ReqID: 5,
			Selector:   kernelops.Selector{Src: mp("2001:db8::1/128"), Dst: mp("2001:db8::2/128"), Proto: 17, SrcPort: 500, DstPort: 500},
			Encryption: kernelops.Encryption{ID: iana.EncrAESCBC, KeyBits: 128, Key: bytes.Repeat([]byte{2}, 16)},
			Integrity:  kernelops.Integrity{ID: iana.IntegHMACSHA256_128, Key: bytes.Repeat([]byte{3}, 32)},
		}},
		{"esn big window ctr", kernelops.SA{
			ID:   kernelops.SAID{Src: ma("10.0.0.1"), Dst: ma("10.0.0.2"), SPI: 0x2000, Proto: kernelops.ProtoESP},
			Mode: kernelops.ModeTunnel, ESN: true, ReplayWindow: 1024,
			Encryption: kernelops.Encryption{ID: iana.EncrAESCTR, KeyBits: 192, Key: bytes.Repeat([]byte{4}, 28)},
			Integrity:  kernelops.Integrity{ID: iana.IntegHMACSHA512_256, Key: bytes.Repeat([]byte{5}, 64)},
		}},
		{"ccm12 and chacha ids", kernelops.SA{
			ID:   kernelops.SAID{Src: ma("10.0.0.1"), Dst: ma("10.0.0.2"), SPI: 0x2001, Proto: kernelops.ProtoESP},
			Mode: kernelops.ModeTunnel, ReplayWindow: 64,
			Encryption: kernelops.Encryption{ID: iana.EncrAESCCM12, KeyBits: 128, Key: bytes.Repeat([]byte{6}, 19)},
		}},
		{"ah", kernelops.SA{
			ID:   kernelops.SAID{Src: ma("10.0.0.1"), Dst: ma("10.0.0.2"), SPI: 0x3000, Proto: kernelops.ProtoAH},
			Mode: kernelops.ModeTransport, ReplayWindow: 16,
			Integrity: kernelops.Integrity{ID: iana.IntegHMACSHA1_96, Key: bytes.Repeat([]byte{7}, 20)},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := kernelops.ValidateSA(Name, "test", &tc.sa, nil); err != nil {
				t.Fatalf("test SA invalid: %v", err)
			}
			var mb msgBuilder
			if err := appendSA(&mb, nl.XFRM_MSG_NEWSA, reqFlags, 42, &tc.sa, saOpts{}); err != nil {
				t.Fatal(err)
			}
			m := body(t, &mb)
			if m.Type != nl.XFRM_MSG_NEWSA || m.Seq != 42 || m.Flags != reqFlags {
				t.Fatalf("header %+v", m)
			}
			var e kernelops.SAEntry
			var meta saMeta
			if err := decodeSA(m.Data, &e, &meta); err != nil {
				t.Fatal(err)
			}
			want := tc.sa
			want.Mark = want.ID.Mark
			if !reflect.DeepEqual(e.SA, want) {
				t.Errorf("round trip:\n got %+v\nwant %+v", e.SA, want)
			}
			if e.State != kernelops.SAValid {
				t.Errorf("state %v", e.State)
			}
			if e.Counters.Replay.Window != tc.sa.ReplayWindow {
				t.Errorf("replay window in counters %d, want %d", e.Counters.Replay.Window, tc.sa.ReplayWindow)
			}
			id, reqid, ok := saOwnerInfo(m.Data)
			if !ok || id != tc.sa.ID || reqid != tc.sa.ReqID {
				t.Errorf("saOwnerInfo = %v %d %v", id, reqid, ok)
			}
		})
	}
}

func TestSAWireDetails(t *testing.T) {
	sa := &kernelops.SA{
		ID:   kernelops.SAID{Src: ma("10.0.0.1"), Dst: ma("10.0.0.2"), SPI: 0x01020304, Proto: kernelops.ProtoESP},
		Mode: kernelops.ModeTunnel, ReplayWindow: 32,
		Encryption: kernelops.Encryption{ID: iana.EncrAESGCM8, KeyBits: 128, Key: make([]byte, 20)},
	}
	var mb msgBuilder
	if err := appendSA(&mb, nl.XFRM_MSG_NEWSA, reqFlags, 1, sa, saOpts{Offload: &offloadReq{IfIndex: 3, Flags: xfrmOffloadPacket}, SADir: true}); err != nil {
		t.Fatal(err)
	}
	b := body(t, &mb).Data
	// SPI big-endian at xfrm_usersa_info.id.spi.
	if !bytes.Equal(b[72:76], []byte{1, 2, 3, 4}) {
		t.Errorf("SPI bytes %x", b[72:76])
	}
	if b[216]&nl.XFRM_STATE_AF_UNSPEC == 0 {
		t.Errorf("tunnel SA without selector lacks XFRM_STATE_AF_UNSPEC")
	}
	seen := map[uint16][]byte{}
	it := newAttrIter(b[sizeUsersaInfo:])
	for a, ok := it.next(); ok; a, ok = it.next() {
		seen[a.Type] = a.Data
	}
	aead := seen[nl.XFRMA_ALG_AEAD]
	if cString(aead[:64]) != "rfc4106(gcm(aes))" || ne.Uint32(aead[64:]) != 160 || ne.Uint32(aead[68:]) != 64 {
		t.Errorf("AEAD attribute name %q keylen %d icv %d", cString(aead[:64]), ne.Uint32(aead[64:]), ne.Uint32(aead[68:]))
	}
	if off := seen[nl.XFRMA_OFFLOAD_DEV]; len(off) != sizeOffload || ne.Uint32(off) != 3 || off[4] != xfrmOffloadPacket {
		t.Errorf("offload attribute %x", off)
	}
	if _, ok := seen[nl.XFRMA_SA_DIR]; ok {
		t.Errorf("XFRMA_SA_DIR sent for an SA without direction")
	}
	for _, a := range []uint16{nl.XFRMA_REPLAY_THRESH, nl.XFRMA_ETIMER_THRESH} {
		if v, ok := seen[a]; !ok || ne.Uint32(v) != 0 {
			t.Errorf("attribute %d = %x, want 0 (no sync events unless asked)", a, v)
		}
	}
}

func TestUnknownAlgorithmsReadAsZero(t *testing.T) {
	sa := &kernelops.SA{ID: kernelops.SAID{Src: ma("10.0.0.1"), Dst: ma("10.0.0.2"), SPI: 0x1000, Proto: kernelops.ProtoESP},
		Mode: kernelops.ModeTunnel}
	var mb msgBuilder
	mb.begin(nl.XFRM_MSG_NEWSA, 0, 1)
	p := mb.grow(sizeUsersaInfo)
	putAddr(p[56:], sa.ID.Dst)
	p[76] = 50
	putAddr(p[80:], sa.ID.Src)
	ne.PutUint16(p[212:], unix.AF_INET)
	_ = putAlgo(&mb, nl.XFRMA_ALG_CRYPT, "cbc(camellia)", make([]byte, 16), 0)
	_ = putAlgo(&mb, nl.XFRMA_ALG_AUTH_TRUNC, "hmac(rmd160)", make([]byte, 20), 96)
	mb.end()
	var e kernelops.SAEntry
	var meta saMeta
	if err := decodeSA(body(t, &mb).Data, &e, &meta); err != nil {
		t.Fatal(err)
	}
	if e.Encryption.ID != 0 || e.Integrity.ID != 0 || len(e.Encryption.Key) != 16 || e.State != kernelops.SAValid {
		t.Errorf("foreign algorithms: %+v state %v", e.SA, e.State)
	}
}

func TestAlgorithmTables(t *testing.T) {
	for _, id := range allEncr() {
		a, ok := encrAlgs[id]
		if !ok {
			t.Errorf("%s has no kernel name", id)
			continue
		}
		info, _ := id.Info()
		if a.Kind == algAEAD != info.AEAD || (info.AEAD && a.ICV != info.ICVBits) {
			t.Errorf("%s: kernel %+v disagrees with kernelops %+v", id, a, info)
		}
		icv := a.ICV
		if a.Kind == algCrypt {
			icv = 0
		}
		if back, ok := encrByKernel(a.Name, icv); !ok || back != id {
			t.Errorf("%s -> %q -> %v", id, a.Name, back)
		}
	}
	for _, id := range allInteg() {
		a := integAlgs[id]
		info, _ := id.Info()
		if a.ICV != info.ICVBits {
			t.Errorf("%s: truncation %d, kernelops says %d", id, a.ICV, info.ICVBits)
		}
		if back, ok := integByKernel(a.Name, a.ICV); !ok || back != id {
			t.Errorf("%s -> %q -> %v", id, a.Name, back)
		}
	}
	// hmac(sha256) truncated to 96 bits is the pre-RFC 4868 draft, not
	// AUTH_HMAC_SHA2_256_128: it must not read back as that.
	if id, ok := integByKernel("hmac(sha256)", 96); ok {
		t.Errorf("hmac(sha256)/96 reads as %v", id)
	}
}

func TestPolicyRoundTrip(t *testing.T) {
	tests := []kernelops.Policy{
		{Selector: kernelops.Selector{Src: mp("10.1.0.0/16"), Dst: mp("10.2.0.0/16")}, Dir: kernelops.DirOut,
			Action: kernelops.ActionIPsec, Mark: kernelops.Mark{Value: 1, Mask: 3}, IfID: 4,
			Templates: []kernelops.Template{
				{Src: ma("192.0.2.1"), Dst: ma("192.0.2.2"), Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: 7},
				{Proto: kernelops.ProtoIPComp, Mode: kernelops.ModeTransport, ReqID: 8, Optional: true},
			},
			Lifetime: kernelops.Lifetimes{Hard: kernelops.Limits{AddTime: time.Minute}}},
		{Selector: kernelops.Selector{Proto: 17, DstPort: 500}, Dir: kernelops.DirIn, Action: kernelops.ActionPass, Priority: 99},
		{Selector: kernelops.Selector{Src: mp("::/0"), Dst: mp("::/0"), Proto: 58, SrcPort: 135}, Dir: kernelops.DirFwd,
			Action: kernelops.ActionBlock},
		{Selector: kernelops.Selector{Src: mp("fd00::/8")}, Dir: kernelops.DirOut, Action: kernelops.ActionBlock},
	}
	for _, p := range tests {
		t.Run(p.ID().String(), func(t *testing.T) {
			if err := kernelops.ValidatePolicy(Name, "test", &p); err != nil {
				t.Fatalf("test policy invalid: %v", err)
			}
			var mb msgBuilder
			appendPolicy(&mb, nl.XFRM_MSG_NEWPOLICY, reqFlags, 3, &p, 0x80000009)
			var e kernelops.PolicyEntry
			var meta polMeta
			if err := decodePolicy(body(t, &mb).Data, &e, &meta); err != nil {
				t.Fatal(err)
			}
			want := p
			want.Priority = kernelops.EffectivePriority(&p)
			if !reflect.DeepEqual(e.Policy, want) {
				t.Errorf("round trip:\n got %+v\nwant %+v", e.Policy, want)
			}
			if meta.Index != 0x80000009 {
				t.Errorf("index %#x", meta.Index)
			}
		})
	}
}

func TestCanonSel(t *testing.T) {
	for _, tc := range []struct{ in, want kernelops.Selector }{
		{kernelops.Selector{}, kernelops.Selector{}},
		{kernelops.Selector{Src: mp("0.0.0.0/0")}, kernelops.Selector{}},
		{kernelops.Selector{Src: mp("::/0")}, kernelops.Selector{Src: mp("::/0"), Dst: mp("::/0")}},
		{kernelops.Selector{Src: mp("fd00::/8"), Dst: mp("::/0")}, kernelops.Selector{Src: mp("fd00::/8")}},
		{kernelops.Selector{Src: mp("10.0.0.0/8"), Proto: 6}, kernelops.Selector{Src: mp("10.0.0.0/8"), Proto: 6}},
	} {
		if got := canonSel(tc.in); got != tc.want {
			t.Errorf("canonSel(%v) = %v, want %v", tc.in, got, tc.want)
		}
		if canonSel(canonSel(tc.in)) != canonSel(tc.in) {
			t.Errorf("canonSel not idempotent on %v", tc.in)
		}
	}
}

func TestNlErrorExtack(t *testing.T) {
	// NLMSG_ERROR, capped, with NLMSGERR_ATTR_MSG and _OFFS.
	var mb msgBuilder
	mb.begin(unix.NLMSG_ERROR, unix.NLM_F_CAPPED|unix.NLM_F_ACK_TLVS, 0)
	p := mb.grow(nlmsgErrLen)
	errc := -int32(syscall.EINVAL)
	ne.PutUint32(p[0:], uint32(errc))
	ne.PutUint32(p[4:], nlmsgHdrLen)
	ne.PutUint32(p[4+8:], 77) // the request's seq
	msg := "Unrecognized flags in offload request"
	mb.attrBytes(unix.NLMSGERR_ATTR_MSG, append([]byte(msg), 0))
	mb.attrU32(unix.NLMSGERR_ATTR_OFFS, 300)
	mb.end()
	e, err := parseNlError(body(t, &mb))
	if err != nil {
		t.Fatal(err)
	}
	if e.Errno != syscall.EINVAL || e.Seq != 77 || e.ExtMsg != msg || e.Offset != 300 {
		t.Errorf("parsed %+v", e)
	}
	// A plain ack.
	mb = msgBuilder{}
	mb.begin(unix.NLMSG_ERROR, 0, 0)
	mb.grow(nlmsgErrLen)
	mb.end()
	if e, err := parseNlError(body(t, &mb)); err != nil || e.Errno != 0 {
		t.Errorf("ack parsed as %+v, %v", e, err)
	}
}

// kernel-side message builders for the event tests and fuzz seeds.

func acquireMsg(ev kernelops.AcquireEvent, tmpl kernelops.Template, mark kernelops.Mark) []byte {
	var mb msgBuilder
	mb.begin(nl.XFRM_MSG_ACQUIRE, 0, 0)
	b := mb.grow(sizeAcquire)
	putAddr(b[0:], ev.Dst)
	b[20] = uint8(ev.Proto)
	putAddr(b[24:], ev.Src)
	putSelector(b[40:], ev.Packet, famOf(ev.Packet.Src.Addr()))
	putSelector(b[96:], ev.Policy.Selector, famOf(ev.Policy.Selector.Src.Addr()))
	b[96+160] = dirToKernel(ev.Policy.Dir)
	ne.PutUint32(b[276:], ev.Seq)
	putTmpl(mb.attr(nl.XFRMA_TMPL, sizeUserTmpl), tmpl, unix.AF_INET)
	putMark(&mb, mark)
	mb.end()
	return mb.buf
}

func TestDecodeAcquire(t *testing.T) {
	want := kernelops.AcquireEvent{
		Seq: 0x1234, Src: ma("192.0.2.1"), Dst: ma("198.51.100.1"), Proto: kernelops.ProtoESP, ReqID: 0x4b500007,
		Policy: kernelops.PolicyID{Selector: kernelops.Selector{Src: mp("10.1.0.0/16"), Dst: mp("10.2.0.0/16")},
			Dir: kernelops.DirOut, Mark: kernelops.Mark{Value: 5, Mask: 0xf}},
		Packet: kernelops.Selector{Src: mp("10.1.0.1/32"), Dst: mp("10.2.0.1/32"), Proto: 17, SrcPort: 40000, DstPort: 9},
	}
	tmpl := kernelops.Template{Src: want.Src, Dst: want.Dst, Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: want.ReqID}
	m, _, err := nextMsg(acquireMsg(want, tmpl, want.Policy.Mark))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := decodeXFRMEvent(m, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got := ev.(*kernelops.AcquireEvent); !reflect.DeepEqual(*got, want) {
		t.Errorf("acquire:\n got %+v\nwant %+v", *got, want)
	}
}

func expireMsg(sa *kernelops.SA, cur lftCur, hard bool) []byte {
	var mb msgBuilder
	_ = appendSA(&mb, nl.XFRM_MSG_EXPIRE, 0, 0, sa, saOpts{})
	// Re-lay as xfrm_user_expire: usersa_info, hard, pad; then the mark.
	info := append([]byte(nil), mb.buf[nlmsgHdrLen:nlmsgHdrLen+sizeUsersaInfo]...)
	putLftCur(info[160:], cur)
	var out msgBuilder
	out.begin(nl.XFRM_MSG_EXPIRE, 0, 0)
	b := out.grow(sizeUserExpire)
	copy(b, info)
	if hard {
		b[224] = 1
	}
	putMark(&out, sa.ID.Mark)
	out.end()
	return out.buf
}

func TestDecodeExpire(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	sa := &kernelops.SA{ID: kernelops.SAID{Src: ma("10.0.0.1"), Dst: ma("10.0.0.2"), SPI: 0x99, Proto: kernelops.ProtoESP,
		Mark: kernelops.Mark{Value: 1, Mask: 1}}, ReqID: 3, Mode: kernelops.ModeTunnel}
	for _, tc := range []struct {
		name string
		lft  kernelops.Lifetimes
		cur  lftCur
		hard bool
		want kernelops.LimitKind
	}{
		{"soft bytes", kernelops.Lifetimes{Soft: kernelops.Limits{Bytes: 100}, Hard: kernelops.Limits{Bytes: 200}}, lftCur{Bytes: 128}, false, kernelops.LimitBytes},
		{"hard packets", kernelops.Lifetimes{Soft: kernelops.Limits{Packets: 10}, Hard: kernelops.Limits{Packets: 20}}, lftCur{Packets: 20}, true, kernelops.LimitPackets},
		{"soft add time", kernelops.Lifetimes{Soft: kernelops.Limits{AddTime: 2 * time.Second}, Hard: kernelops.Limits{AddTime: 4 * time.Second}},
			lftCur{AddTime: uint64(now.Unix() - 2)}, false, kernelops.LimitAddTime},
		{"hard use time", kernelops.Lifetimes{Hard: kernelops.Limits{AddTime: time.Hour, UseTime: 4 * time.Second}},
			lftCur{AddTime: uint64(now.Unix() - 10), UseTime: uint64(now.Unix() - 4)}, true, kernelops.LimitUseTime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := *sa
			s.Lifetime = tc.lft
			m, _, err := nextMsg(expireMsg(&s, tc.cur, tc.hard))
			if err != nil {
				t.Fatal(err)
			}
			ev, err := decodeXFRMEvent(m, now)
			if err != nil {
				t.Fatal(err)
			}
			x := ev.(*kernelops.ExpireEvent)
			if x.SA != sa.ID || x.ReqID != 3 || x.Hard != tc.hard || x.Limit != tc.want {
				t.Errorf("expire %+v, want SA %v hard %v limit %v", x, sa.ID, tc.hard, tc.want)
			}
		})
	}
}

func TestDecodeMappingMigrateAevent(t *testing.T) {
	// Mapping.
	var mb msgBuilder
	mb.begin(nl.XFRM_MSG_MAPPING, 0, 0)
	b := mb.grow(sizeMapping)
	putUsersaID(b, kernelops.SAID{Dst: ma("10.0.0.1"), SPI: 0xabc, Proto: kernelops.ProtoESP})
	ne.PutUint32(b[24:], 17)
	putAddr(b[28:], ma("192.0.2.9"))
	putAddr(b[44:], ma("192.0.2.10"))
	be.PutUint16(b[60:], 4500)
	be.PutUint16(b[62:], 33000)
	mb.end()
	ev, err := decodeXFRMEvent(body(t, &mb), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	mev := ev.(*kernelops.MappingEvent)
	if mev.SA != (kernelops.SAID{Src: ma("192.0.2.9"), Dst: ma("10.0.0.1"), SPI: 0xabc, Proto: kernelops.ProtoESP}) ||
		mev.ReqID != 17 || mev.Old != netip.MustParseAddrPort("192.0.2.9:4500") || mev.New != netip.MustParseAddrPort("192.0.2.10:33000") {
		t.Errorf("mapping %+v", mev)
	}

	// Migrate, as the kernel sends it: one XFRMA_MIGRATE per entry.
	id := kernelops.PolicyID{Selector: kernelops.Selector{Src: mp("10.1.0.0/16"), Dst: mp("10.2.0.0/16")}, Dir: kernelops.DirIn}
	mb = msgBuilder{}
	mb.begin(nl.XFRM_MSG_MIGRATE, 0, 0)
	b = mb.grow(sizePolicyID)
	putSelector(b, id.Selector, unix.AF_INET)
	b[60] = xfrmPolicyIn
	for _, e := range []migrateEntry{
		{OldDst: ma("192.0.2.1"), OldSrc: ma("192.0.2.2"), NewDst: ma("203.0.113.1"), NewSrc: ma("203.0.113.2"), Proto: 50, Mode: xfrmModeTunnel, ReqID: 9},
		{OldDst: ma("2001:db8::1"), OldSrc: ma("2001:db8::2"), NewDst: ma("2001:db8:1::1"), NewSrc: ma("2001:db8:1::2"), Proto: 51, Mode: xfrmModeTransport, ReqID: 10},
	} {
		putMigrate(mb.attr(nl.XFRMA_MIGRATE, sizeUserMigrate), e)
	}
	mb.end()
	ev, err = decodeXFRMEvent(body(t, &mb), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	mig := ev.(*kernelops.MigrateEvent)
	wantMig := &kernelops.MigrateEvent{Policy: id, Entries: []kernelops.MigrateEntry{
		{Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: 9,
			Old: kernelops.Endpoints{Local: ma("192.0.2.1"), Remote: ma("192.0.2.2")},
			New: kernelops.Endpoints{Local: ma("203.0.113.1"), Remote: ma("203.0.113.2")}},
		{Proto: kernelops.ProtoAH, Mode: kernelops.ModeTransport, ReqID: 10,
			Old: kernelops.Endpoints{Local: ma("2001:db8::1"), Remote: ma("2001:db8::2")},
			New: kernelops.Endpoints{Local: ma("2001:db8:1::1"), Remote: ma("2001:db8:1::2")}},
	}}
	if !reflect.DeepEqual(mig, wantMig) {
		t.Errorf("migrate:\n got %+v\nwant %+v", mig, wantMig)
	}

	// Aevent with an ESN replay state, caused by the replay threshold.
	said := kernelops.SAID{Src: ma("10.0.0.2"), Dst: ma("10.0.0.1"), SPI: 0x77, Proto: kernelops.ProtoESP}
	mb = msgBuilder{}
	appendAevent(&mb, nl.XFRM_MSG_NEWAE, 0, 0, said, 12, xfrmAECR)
	putReplayESN(&mb, kernelops.ReplayState{OSeq: 1<<32 + 5, Seq: 3<<32 + 9, Window: 64, Bitmap: []uint32{0xff, 0x1}}, 2)
	putLftCur(mb.attr(nl.XFRMA_LTIME_VAL, sizeLftCur), lftCur{Bytes: 1000, Packets: 10, AddTime: 1_700_000_000})
	mb.end()
	ev, err = decodeXFRMEvent(body(t, &mb), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	se := ev.(*kernelops.SyncEvent)
	if se.SA != said || se.ReqID != 12 || se.Reason != kernelops.SyncReplay || se.State.Replay.OSeq != 1<<32+5 ||
		se.State.Replay.Seq != 3<<32+9 || !reflect.DeepEqual(se.State.Replay.Bitmap, []uint32{0xff, 1}) ||
		se.State.Bytes != 1000 || se.State.Packets != 10 || se.State.AddTime.Unix() != 1_700_000_000 {
		t.Errorf("sync event %+v", se)
	}
	// The echo of a NEWAE write is no sync event.
	mb = msgBuilder{}
	appendAevent(&mb, nl.XFRM_MSG_NEWAE, 0, 0, said, 12, xfrmAECU)
	mb.end()
	if ev, err := decodeXFRMEvent(body(t, &mb), time.Now()); err != nil || ev != nil {
		t.Errorf("NEWAE echo decoded as %v, %v", ev, err)
	}
}

func rtMsg(typ uint16, hdr []byte, attrs func(*msgBuilder)) nlMsg {
	var mb msgBuilder
	mb.begin(typ, 0, 0)
	copy(mb.grow(len(hdr)), hdr)
	attrs(&mb)
	mb.end()
	m, _, _ := nextMsg(mb.buf)
	return m
}

func TestDecodeRtnetlink(t *testing.T) {
	ifa := make([]byte, sizeIfAddrmsg)
	ifa[0], ifa[1] = unix.AF_INET, 24
	ne.PutUint32(ifa[4:], 3)
	m := rtMsg(unix.RTM_NEWADDR, ifa, func(mb *msgBuilder) {
		mb.attrBytes(unix.IFA_ADDRESS, []byte{10, 0, 0, 9}) // a point-to-point peer
		mb.attrBytes(unix.IFA_LOCAL, []byte{10, 0, 0, 1})
		mb.attrBytes(unix.IFA_LABEL, []byte("eth0\x00"))
	})
	ae, err := decodeAddrMsg(m.Type, m.Data)
	if err != nil || !ae.Added || ae.IfIndex != 3 || ae.IfName != "eth0" || ae.Prefix != mp("10.0.0.1/24") {
		t.Errorf("address %+v, %v", ae, err)
	}
	ifi := make([]byte, sizeIfInfomsg)
	ne.PutUint32(ifi[4:], 7)
	ne.PutUint32(ifi[8:], unix.IFF_UP|unix.IFF_RUNNING)
	m = rtMsg(unix.RTM_NEWLINK, ifi, func(mb *msgBuilder) { mb.attrBytes(unix.IFLA_IFNAME, []byte("kp0\x00")) })
	li, err := decodeLinkMsg(m.Data)
	if err != nil || li.Index != 7 || li.Name != "kp0" || !li.up() {
		t.Errorf("link %+v, %v", li, err)
	}
	rtm := make([]byte, sizeRtmsg)
	rtm[0], rtm[1], rtm[4] = unix.AF_INET6, 0, unix.RT_TABLE_MAIN
	m = rtMsg(unix.RTM_DELROUTE, rtm, func(mb *msgBuilder) {
		mb.attrBytes(unix.RTA_GATEWAY, ma("fe80::1").AsSlice())
		mb.attrU32(unix.RTA_OIF, 2)
	})
	re, err := decodeRouteMsg(m.Type, m.Data)
	if err != nil || re.Added || re.Dst != mp("::/0") || re.Gateway != ma("fe80::1") || re.IfIndex != 2 || re.Table != unix.RT_TABLE_MAIN {
		t.Errorf("route %+v, %v", re, err)
	}
	ne.PutUint32(rtm[8:], unix.RTM_F_CLONED)
	m = rtMsg(unix.RTM_NEWROUTE, rtm, func(*msgBuilder) {})
	if re, err := decodeRouteMsg(m.Type, m.Data); re != nil || err != nil {
		t.Errorf("cloned route reported: %+v, %v", re, err)
	}
}

func TestTruncatedInputs(t *testing.T) {
	// Every decoder refuses every truncation of a valid message without
	// panicking.
	var mb msgBuilder
	sa := &kernelops.SA{ID: kernelops.SAID{Src: ma("10.0.0.1"), Dst: ma("10.0.0.2"), SPI: 0x1000, Proto: kernelops.ProtoESP},
		Mode: kernelops.ModeTunnel, ESN: true, ReplayWindow: 64,
		Encryption: kernelops.Encryption{ID: iana.EncrAESGCM16, KeyBits: 128, Key: make([]byte, 20)}}
	_ = appendSA(&mb, nl.XFRM_MSG_NEWSA, 0, 0, sa, saOpts{})
	full := mb.buf[nlmsgHdrLen:]
	var e kernelops.SAEntry
	var meta saMeta
	for n := range len(full) {
		_ = decodeSA(full[:n], &e, &meta)
		_, _ = decodeXFRMEvent(nlMsg{Type: nl.XFRM_MSG_ACQUIRE, Data: full[:n]}, time.Now())
		_, _ = decodeXFRMEvent(nlMsg{Type: nl.XFRM_MSG_MIGRATE, Data: full[:n]}, time.Now())
	}
	if err := decodeSA(full[:sizeUsersaInfo-1], &e, &meta); err == nil {
		t.Errorf("short usersa_info decoded")
	}
}

// TestSADirOutEncoding: on kernels with XFRMA_SA_DIR an outbound SA
// carries no replay window (Linux 6.10 refuses one); inbound keeps it.
func TestSADirOutEncoding(t *testing.T) {
	for _, dir := range []kernelops.Direction{kernelops.DirOut, kernelops.DirIn} {
		sa := &kernelops.SA{ID: kernelops.SAID{Src: ma("10.0.0.1"), Dst: ma("10.0.0.2"), SPI: 0x1000, Proto: kernelops.ProtoESP},
			Mode: kernelops.ModeTunnel, ESN: true, ReplayWindow: 64, Dir: dir,
			Encryption: kernelops.Encryption{ID: iana.EncrAESGCM16, KeyBits: 128, Key: make([]byte, 20)}}
		var mb msgBuilder
		if err := appendSA(&mb, nl.XFRM_MSG_NEWSA, reqFlags, 1, sa, saOpts{SADir: true}); err != nil {
			t.Fatal(err)
		}
		b := body(t, &mb).Data
		var e kernelops.SAEntry
		var meta saMeta
		if err := decodeSA(b, &e, &meta); err != nil {
			t.Fatal(err)
		}
		wantWin := uint32(64)
		if dir == kernelops.DirOut {
			wantWin = 0
		}
		if b[215] != 0 || e.ReplayWindow != wantWin || e.Dir != dir || !e.ESN {
			t.Errorf("%s: legacy window %d, ESN window %d (want %d), dir %v", dir, b[215], e.ReplayWindow, wantWin, e.Dir)
		}
		if dir == kernelops.DirOut && len(e.Counters.Replay.Bitmap) != 0 {
			t.Errorf("outbound SA carries a %d-word bitmap", len(e.Counters.Replay.Bitmap))
		}
	}
}

// TestSASyncEncoding: an SA added with SA.Sync carries it in the NEWSA
// itself — the replay state (legacy or ESN, the outbound sequence
// number included) and XFRMA_LTIME_VAL with the synced usage and add
// time, or the add's own time when none was synced.
func TestSASyncEncoding(t *testing.T) {
	added := time.Unix(1_700_000_000, 0)
	for _, tc := range []struct {
		name   string
		esn    bool
		window uint32
		st     kernelops.SyncState
	}{
		{"legacy", false, 32, kernelops.SyncState{Replay: kernelops.ReplayState{OSeq: 70000, Seq: 5000, Bitmap: []uint32{0x80000001}},
			Bytes: 1234, Packets: 56, AddTime: added, UseTime: added.Add(time.Second)}},
		{"esn", true, 128, kernelops.SyncState{Replay: kernelops.ReplayState{OSeq: 1<<32 + 7, Seq: 1<<33 + 1, Bitmap: []uint32{1, 2, 3, 4}},
			AddTime: added}},
		{"no add time", false, 32, kernelops.SyncState{Replay: kernelops.ReplayState{OSeq: 9}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sa := &kernelops.SA{ID: kernelops.SAID{Src: ma("10.0.0.1"), Dst: ma("10.0.0.2"), SPI: 0x1000, Proto: kernelops.ProtoESP},
				Mode: kernelops.ModeTunnel, ESN: tc.esn, ReplayWindow: tc.window, Sync: &tc.st,
				Encryption: kernelops.Encryption{ID: iana.EncrAESGCM16, KeyBits: 128, Key: make([]byte, 20)}}
			var mb msgBuilder
			before := time.Now().Unix()
			if err := appendSA(&mb, nl.XFRM_MSG_NEWSA, reqFlags, 1, sa, saOpts{}); err != nil {
				t.Fatal(err)
			}
			b := body(t, &mb).Data
			var e kernelops.SAEntry
			var meta saMeta
			if err := decodeSA(b, &e, &meta); err != nil {
				t.Fatal(err)
			}
			r := e.Counters.Replay
			if r.OSeq != tc.st.Replay.OSeq || r.Seq != tc.st.Replay.Seq || !slices.Equal(r.Bitmap, tc.st.Replay.Bitmap) && len(tc.st.Replay.Bitmap) > 0 {
				t.Errorf("replay state %+v, want %+v", r, tc.st.Replay)
			}
			var cur []byte
			it := newAttrIter(b[sizeUsersaInfo:])
			for a, ok := it.next(); ok; a, ok = it.next() {
				if a.Type == nl.XFRMA_LTIME_VAL {
					cur = a.Data
				}
			}
			if len(cur) != sizeLftCur {
				t.Fatalf("XFRMA_LTIME_VAL %x", cur)
			}
			c := getLftCur(cur)
			wantAdd := uint64(added.Unix())
			if tc.st.AddTime.IsZero() {
				if c.AddTime < uint64(before) || c.AddTime > uint64(time.Now().Unix()) {
					t.Errorf("add time %d without a synced one, want now (%d)", c.AddTime, before)
				}
			} else if c.AddTime != wantAdd {
				t.Errorf("add time %d, want %d", c.AddTime, wantAdd)
			}
			if c.Bytes != tc.st.Bytes || c.Packets != tc.st.Packets || c.UseTime != unixSecs(tc.st.UseTime) {
				t.Errorf("usage %+v, want %d bytes %d packets used %v", c, tc.st.Bytes, tc.st.Packets, tc.st.UseTime)
			}
		})
	}
}
