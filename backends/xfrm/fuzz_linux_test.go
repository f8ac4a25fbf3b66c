package xfrm

import (
	"testing"
	"time"

	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Fuzz targets for every decoder of kernel bytes. Each gets whole netlink
// datagrams (one or more messages), as recvmsg hands them over, so the
// framing is fuzzed with the payloads. Crashers live in
// testdata/fuzz/<Name>/.

func seedSA() []byte {
	var mb msgBuilder
	sa := &kernelops.SA{ID: kernelops.SAID{Src: ma("10.0.0.1"), Dst: ma("10.0.0.2"), SPI: 0x1000, Proto: kernelops.ProtoESP,
		Mark: kernelops.Mark{Value: 1, Mask: 1}}, Mode: kernelops.ModeTunnel, ESN: true, ReplayWindow: 128,
		Encryption: kernelops.Encryption{ID: iana.EncrAESCBC, KeyBits: 128, Key: make([]byte, 16)},
		Integrity:  kernelops.Integrity{ID: iana.IntegHMACSHA256_128, Key: make([]byte, 32)},
		Encap:      &kernelops.Encap{SrcPort: 4500, DstPort: 4500}}
	_ = appendSA(&mb, nl.XFRM_MSG_NEWSA, 0, 1, sa, saOpts{Offload: &offloadReq{IfIndex: 2, Flags: 1}})
	return mb.buf
}

func seedPolicy() []byte {
	var mb msgBuilder
	p := &kernelops.Policy{Selector: kernelops.Selector{Src: mp("10.1.0.0/16"), Dst: mp("10.2.0.0/16")},
		Dir: kernelops.DirOut, Action: kernelops.ActionIPsec, IfID: 3,
		Templates: []kernelops.Template{{Src: ma("10.0.0.1"), Dst: ma("10.0.0.2"), Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: 1}}}
	appendPolicy(&mb, nl.XFRM_MSG_NEWPOLICY, 0, 1, p, 0)
	return mb.buf
}

// walk decodes every message of a datagram the way the readers do.
func walk(b []byte, fn func(nlMsg)) {
	for len(b) > 0 {
		m, rest, err := nextMsg(b)
		if err != nil {
			return
		}
		fn(m)
		b = rest
	}
}

func FuzzDecodeSA(f *testing.F) {
	f.Add(seedSA())
	f.Add(append(seedSA(), seedSA()...))
	f.Fuzz(func(t *testing.T, b []byte) {
		var e kernelops.SAEntry
		var meta saMeta
		var u kernelops.Usage
		walk(b, func(m nlMsg) {
			if err := decodeSA(m.Data, &e, &meta); err == nil {
				// What decodes must be a usable SA value.
				_ = e.ID.String()
				_ = len(e.Encryption.Key) + len(e.Counters.Replay.Bitmap)
			}
			_ = decodeUsage(m.Data, &u)
			_, _, _ = saOwnerInfo(m.Data)
		})
	})
}

func FuzzDecodePolicy(f *testing.F) {
	f.Add(seedPolicy())
	f.Fuzz(func(t *testing.T, b []byte) {
		var e kernelops.PolicyEntry
		var meta polMeta
		walk(b, func(m nlMsg) {
			if decodePolicy(m.Data, &e, &meta) == nil {
				_ = e.ID().String()
			}
		})
	})
}

func FuzzXFRMEvent(f *testing.F) {
	ev := kernelops.AcquireEvent{Src: ma("10.0.0.1"), Dst: ma("10.0.0.2"), Proto: kernelops.ProtoESP,
		Policy: kernelops.PolicyID{Selector: kernelops.Selector{Src: mp("10.1.0.0/16")}, Dir: kernelops.DirOut},
		Packet: kernelops.Selector{Src: mp("10.1.0.1/32"), Dst: mp("10.2.0.1/32")}}
	f.Add(acquireMsg(ev, kernelops.Template{Dst: ev.Dst, Src: ev.Src, Proto: kernelops.ProtoESP, Mode: kernelops.ModeTunnel, ReqID: 4}, kernelops.Mark{}))
	sa := &kernelops.SA{ID: kernelops.SAID{Src: ma("10.0.0.1"), Dst: ma("10.0.0.2"), SPI: 1, Proto: kernelops.ProtoESP}, Mode: kernelops.ModeTunnel}
	f.Add(expireMsg(sa, lftCur{Bytes: 9}, true))
	var mb msgBuilder
	appendAevent(&mb, nl.XFRM_MSG_NEWAE, 0, 0, sa.ID, 1, xfrmAECR)
	putReplayESN(&mb, kernelops.ReplayState{Window: 32, Bitmap: []uint32{1}}, 1)
	mb.end()
	f.Add(mb.buf)
	mb = msgBuilder{}
	appendMigrate(&mb, 0, kernelops.PolicyID{Dir: kernelops.DirOut}, []migrateEntry{{OldDst: ma("10.0.0.1"), OldSrc: ma("10.0.0.2"),
		NewDst: ma("10.0.0.3"), NewSrc: ma("10.0.0.4"), Proto: 50, ReqID: 1}}, &kernelops.Encap{SrcPort: 1, DstPort: 2})
	f.Add(mb.buf)
	types := []uint16{nl.XFRM_MSG_ACQUIRE, nl.XFRM_MSG_EXPIRE, nl.XFRM_MSG_POLEXPIRE, nl.XFRM_MSG_MAPPING,
		nl.XFRM_MSG_MIGRATE, nl.XFRM_MSG_NEWAE}
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, b []byte) {
		walk(b, func(m nlMsg) {
			// Try the bytes as every event type, not only the one the
			// header claims.
			for _, typ := range types {
				m.Type = typ
				if ev, err := decodeXFRMEvent(m, now); err == nil && ev != nil {
					_ = ev.Kind().String()
				}
			}
		})
	})
}

func FuzzRtnetlink(f *testing.F) {
	ifa := make([]byte, sizeIfAddrmsg)
	ifa[0], ifa[1] = unix.AF_INET6, 64
	f.Add(func() []byte {
		var mb msgBuilder
		mb.begin(unix.RTM_NEWADDR, 0, 0)
		copy(mb.grow(len(ifa)), ifa)
		mb.attrBytes(unix.IFA_ADDRESS, ma("2001:db8::1").AsSlice())
		mb.end()
		return mb.buf
	}())
	f.Fuzz(func(t *testing.T, b []byte) {
		walk(b, func(m nlMsg) {
			_, _ = decodeAddrMsg(unix.RTM_NEWADDR, m.Data)
			_, _ = decodeLinkMsg(m.Data)
			_, _ = decodeRouteMsg(unix.RTM_NEWROUTE, m.Data)
		})
	})
}

func FuzzNetlinkError(f *testing.F) {
	var mb msgBuilder
	mb.begin(unix.NLMSG_ERROR, unix.NLM_F_ACK_TLVS, 0)
	mb.grow(nlmsgErrLen)
	mb.attrBytes(unix.NLMSGERR_ATTR_MSG, []byte("reason\x00"))
	mb.end()
	f.Add(mb.buf)
	f.Fuzz(func(t *testing.T, b []byte) {
		walk(b, func(m nlMsg) {
			for _, flags := range []uint16{0, unix.NLM_F_ACK_TLVS, unix.NLM_F_ACK_TLVS | unix.NLM_F_CAPPED} {
				m.Flags = flags
				_, _ = parseNlError(m)
			}
		})
	})
}
