package xfrm

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// kernelInfo is what the running kernel can do. Crypto algorithms and
// IPsec protocol modules are global to the kernel, so they are probed
// once per process, by installing throwaway SAs in a private network
// namespace that disappears afterwards: no other process sees them.
type kernelInfo struct {
	Release      string
	Major, Minor int

	Probed   bool   // the private-namespace probe ran
	ProbeErr string // why it did not

	ESP, AH, IPComp bool
	ESPErr          string // the kernel's answer when ESP is missing
	Algorithms      kernelops.AlgorithmSet
	Migrate         bool // XFRM_MSG_MIGRATE (CONFIG_XFRM_MIGRATE)
	XfrmIfaces      bool // xfrm interfaces (CONFIG_XFRM_INTERFACE)
	XfrmIfacesErr   string
	HZ              int // kernel tick rate (XFRMA_ETIMER_THRESH is set in jiffies)
	HZSource        string

	// LastUsed: a packet through an SA sets XFRMA_LASTUSED. Linux 6.2
	// made xfrm_input and xfrm_output update it on every packet; before,
	// only IPv6 route optimisation did. Measured with real traffic over
	// loopback in the probe namespace, so a backport counts.
	LastUsed       bool
	LastUsedProbed bool
	LastUsedWhy    string
}

func (k kernelInfo) atLeast(major, minor int) bool {
	return k.Major > major || (k.Major == major && k.Minor >= minor)
}

// lastUsed: see kernelInfo.LastUsed; without a probe, the version says.
func (k kernelInfo) lastUsed() bool {
	if k.LastUsedProbed {
		return k.LastUsed
	}
	return k.atLeast(6, 2)
}

// SADir: XFRMA_SA_DIR exists since Linux 6.10.
func (k kernelInfo) saDir() bool { return k.atLeast(6, 10) }

// PacketOffload: XFRM_OFFLOAD_PACKET exists since Linux 6.2; older
// kernels refuse the flag ("Unrecognized flags in offload request").
func (k kernelInfo) packetOffload() bool { return k.atLeast(6, 2) }

var (
	probeOnce sync.Once
	probed    kernelInfo
)

// probeKernel returns the process-wide kernel probe.
func probeKernel() kernelInfo {
	probeOnce.Do(func() { probed = runProbe() })
	return probed
}

func runProbe() kernelInfo {
	var k kernelInfo
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		k.Release = unix.ByteSliceToString(u.Release[:])
		k.Major, k.Minor = parseRelease(k.Release)
	}
	k.HZ, k.HZSource = configHZ()
	// The probe runs on a thread of its own that moves into a new network
	// namespace and is never switched back: the goroutine ends locked, so
	// the runtime retires the thread and the namespace goes with it.
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			k.ProbeErr = fmt.Sprintf("cannot create a private network namespace to probe the kernel: %v", err)
			return
		}
		probeInNS(&k)
	}()
	<-done
	return k
}

func parseRelease(r string) (int, int) {
	parts := strings.SplitN(r, ".", 3)
	if len(parts) < 2 {
		return 0, 0
	}
	maj, _ := strconv.Atoi(parts[0])
	minStr := parts[1]
	for i, c := range minStr {
		if c < '0' || c > '9' {
			minStr = minStr[:i]
			break
		}
	}
	mnr, _ := strconv.Atoi(minStr)
	return maj, mnr
}

// configHZ reads CONFIG_HZ from the kernel's config when it is exposed;
// the ETIMER calibration in the probe refines it.
func configHZ() (int, string) {
	f, err := os.Open("/proc/config.gz")
	if err == nil {
		defer f.Close()
		if zr, err := gzip.NewReader(f); err == nil {
			sc := bufio.NewScanner(zr)
			for sc.Scan() {
				if v, ok := strings.CutPrefix(sc.Text(), "CONFIG_HZ="); ok {
					if hz, err := strconv.Atoi(v); err == nil && hz > 0 {
						return hz, "/proc/config.gz"
					}
				}
			}
		}
	}
	return 250, "assumed (Debian's default)"
}

// probeInNS runs in the private namespace.
func probeInNS(k *kernelInfo) {
	ns := &nsRef{} // the current thread's namespace
	s, err := openNLSock(ns, unix.NETLINK_XFRM, 0, 0)
	if err != nil {
		k.ProbeErr = fmt.Sprintf("XFRM netlink: %v", err)
		return
	}
	defer s.close()
	k.Probed = true
	ctx := context.Background()
	src, dst := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	spi := uint32(0x1000)
	try := func(sa *kernelops.SA) error {
		spi++
		sa.ID = kernelops.SAID{Src: src, Dst: dst, SPI: spi, Proto: sa.ID.Proto}
		sa.Mode = kernelops.ModeTransport
		var mb msgBuilder
		seq := s.nextSeq()
		if err := appendSA(&mb, nl.XFRM_MSG_NEWSA, unix.NLM_F_REQUEST|unix.NLM_F_ACK, seq, sa, saOpts{}); err != nil {
			return err
		}
		return s.request(ctx, mb.buf, seq, nil)
	}
	key := func(n int) []byte { return make([]byte, n) }
	// ESP first: its absence is the common case on stripped kernels. The
	// kernel checks the algorithms before the protocol, so the first
	// candidate whose algorithms exist gives the answer.
	var nerr *netlinkError
	for _, c := range []*kernelops.SA{
		{ID: kernelops.SAID{Proto: kernelops.ProtoESP}, Encryption: kernelops.Encryption{ID: iana.EncrNull}},
		{ID: kernelops.SAID{Proto: kernelops.ProtoESP},
			Encryption: kernelops.Encryption{ID: iana.EncrAESCBC, KeyBits: 128, Key: key(16)},
			Integrity:  kernelops.Integrity{ID: iana.IntegHMACSHA256_128, Key: key(32)}},
		{ID: kernelops.SAID{Proto: kernelops.ProtoESP},
			Encryption: kernelops.Encryption{ID: iana.EncrAESGCM16, KeyBits: 128, Key: key(20)}},
	} {
		err := try(c)
		if err == nil {
			k.ESP = true
			break
		}
		k.ESPErr = err.Error()
		if errors.As(err, &nerr) && nerr.Errno == syscall.EPROTONOSUPPORT {
			break
		}
	}
	if k.ESP {
		k.ESPErr = ""
		for _, e := range allEncr() {
			info, _ := e.Info()
			bits := 0
			if info.KeyBits != nil {
				bits = info.KeyBits[0]
			}
			n, _ := e.KeyLen(bits)
			sa := &kernelops.SA{ID: kernelops.SAID{Proto: kernelops.ProtoESP},
				Encryption: kernelops.Encryption{ID: e, KeyBits: bits, Key: key(n)}}
			if !info.AEAD {
				sa.Integrity = kernelops.Integrity{ID: iana.IntegHMACSHA256_128, Key: key(32)}
			}
			if try(sa) == nil {
				k.Algorithms.Encryption = append(k.Algorithms.Encryption, e)
			}
		}
		for _, i := range allInteg() {
			info, _ := i.Info()
			sa := &kernelops.SA{ID: kernelops.SAID{Proto: kernelops.ProtoESP},
				Encryption: kernelops.Encryption{ID: iana.EncrAESCBC, KeyBits: 128, Key: key(16)},
				Integrity:  kernelops.Integrity{ID: i, Key: key(info.KeyLen)}}
			if try(sa) == nil {
				k.Algorithms.Integrity = append(k.Algorithms.Integrity, i)
			}
		}
		cbc := &kernelops.SA{ID: kernelops.SAID{Proto: kernelops.ProtoESP},
			Encryption: kernelops.Encryption{ID: iana.EncrAESCBC, KeyBits: 128, Key: key(16)},
			Integrity:  kernelops.Integrity{ID: iana.IntegHMACSHA256_128, Key: key(32)}}
		if try(cbc) == nil {
			k.calibrateHZ(s, src, dst, spi) // try left spi at cbc's
		}
		k.probeLastUsed(s)
	}
	ah := &kernelops.SA{ID: kernelops.SAID{Proto: kernelops.ProtoAH},
		Integrity: kernelops.Integrity{ID: iana.IntegHMACSHA256_128, Key: key(32)}}
	k.AH = try(ah) == nil
	k.IPComp = try(&kernelops.SA{ID: kernelops.SAID{Proto: kernelops.ProtoIPComp}}) == nil

	// MIGRATE of a policy that does not exist: ENOENT when the kernel
	// has MIGRATE, ENOPROTOOPT when it was built without it.
	var mb msgBuilder
	seq := s.nextSeq()
	appendMigrate(&mb, seq, kernelops.PolicyID{Dir: kernelops.DirOut,
		Selector: kernelops.Selector{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.1.0.0/16")}},
		[]migrateEntry{{OldDst: dst, OldSrc: src, NewDst: dst, NewSrc: src, Proto: 50, Mode: xfrmModeTunnel, ReqID: 1}}, nil)
	merr := s.request(ctx, mb.buf, seq, nil)
	k.Migrate = !(errors.As(merr, &nerr) && nerr.Errno == syscall.ENOPROTOOPT)

	// An xfrm interface in the private namespace.
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err == nil {
		defer h.Close()
		xi := &netlink.Xfrmi{LinkAttrs: netlink.LinkAttrs{Name: "kpprobe0"}, Ifid: 7}
		if err := h.LinkAdd(xi); err != nil {
			k.XfrmIfacesErr = err.Error()
		} else {
			k.XfrmIfaces = true
			_ = h.LinkDel(xi)
		}
	}
}

// calibrateHZ learns the kernel tick rate from XFRMA_ETIMER_THRESH: the
// kernel stores the value written by NEWAE as jiffies but reports it in
// 100 ms units (x->replay_maxage * 10 / HZ).
func (k *kernelInfo) calibrateHZ(s *nlSock, src, dst netip.Addr, spi uint32) {
	id := kernelops.SAID{Src: src, Dst: dst, SPI: spi, Proto: kernelops.ProtoESP}
	const raw = 1_000_000
	ctx := context.Background()
	var mb msgBuilder
	seq := s.nextSeq()
	appendAevent(&mb, nl.XFRM_MSG_NEWAE, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_REPLACE, seq, id, 0, xfrmAEEthr)
	mb.attrU32(nl.XFRMA_ETIMER_THRESH, raw)
	mb.end()
	if s.request(ctx, mb.buf, seq, nil) != nil {
		return
	}
	mb = msgBuilder{}
	seq = s.nextSeq()
	appendAevent(&mb, nl.XFRM_MSG_GETAE, unix.NLM_F_REQUEST|unix.NLM_F_ACK, seq, id, 0, xfrmAEEthr|xfrmAERthr)
	mb.end()
	var ae aevent
	err := s.request(ctx, mb.buf, seq, func(m nlMsg) error { return decodeAevent(m.Data, &ae) })
	if err != nil || ae.ETimer == 0 {
		return
	}
	hz := (raw*10 + int(ae.ETimer)/2) / int(ae.ETimer)
	for _, std := range []int{100, 250, 300, 1000} {
		if hz > std*95/100 && hz < std*105/100 {
			k.HZ, k.HZSource = std, "measured through XFRMA_ETIMER_THRESH"
			return
		}
	}
}

// probeLastUsed pushes one packet through an outbound transport-mode SA
// and reads XFRMA_LASTUSED back. The packet leaves by a veth whose peer
// has no address (loopback traffic is not transformed); that it is never
// delivered does not matter, the SA has counted it by then.
func (k *kernelInfo) probeLastUsed(s *nlSock) {
	fail := func(format string, args ...any) { k.LastUsedWhy = fmt.Sprintf(format, args...) }
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		fail("rtnetlink: %v", err)
		return
	}
	defer h.Close()
	src, dst := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "kpprobe1"}, PeerName: "kpprobe2"}
	if err := h.LinkAdd(veth); err != nil {
		fail("veth: %v", err)
		return
	}
	for _, name := range []string{"kpprobe1", "kpprobe2"} {
		l, err := h.LinkByName(name)
		if err == nil {
			err = h.LinkSetUp(l)
		}
		if err == nil && name == "kpprobe1" {
			err = h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(src.AsSlice()), Mask: net.CIDRMask(24, 32)}})
		}
		if err != nil {
			fail("%s: %v", name, err)
			return
		}
	}
	ctx := context.Background()
	sa := &kernelops.SA{
		ID:         kernelops.SAID{Src: src, Dst: dst, SPI: 0x2000, Proto: kernelops.ProtoESP},
		Mode:       kernelops.ModeTransport,
		Encryption: kernelops.Encryption{ID: iana.EncrAESCBC, KeyBits: 128, Key: make([]byte, 16)},
		Integrity:  kernelops.Integrity{ID: iana.IntegHMACSHA256_128, Key: make([]byte, 32)},
	}
	pol := &kernelops.Policy{
		Selector: kernelops.Selector{Src: netip.PrefixFrom(src, 32), Dst: netip.PrefixFrom(dst, 32), Proto: 17},
		Dir:      kernelops.DirOut, Action: kernelops.ActionIPsec,
		Templates: []kernelops.Template{{Proto: kernelops.ProtoESP, Mode: kernelops.ModeTransport}},
	}
	var mb msgBuilder
	seq := s.nextSeq()
	if err := appendSA(&mb, nl.XFRM_MSG_NEWSA, reqFlags, seq, sa, saOpts{}); err != nil {
		fail("%v", err)
		return
	}
	if err := s.request(ctx, mb.buf, seq, nil); err != nil {
		fail("SA: %v", err)
		return
	}
	mb = msgBuilder{}
	seq = s.nextSeq()
	appendPolicy(&mb, nl.XFRM_MSG_NEWPOLICY, reqFlags, seq, pol, 0)
	if err := s.request(ctx, mb.buf, seq, nil); err != nil {
		fail("policy: %v", err)
		return
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fail("socket: %v", err)
		return
	}
	_ = unix.Sendto(fd, []byte("keyplane probe"), 0, &unix.SockaddrInet4{Port: 9, Addr: dst.As4()})
	unix.Close(fd)
	mb = msgBuilder{}
	seq = s.nextSeq()
	appendSAID(&mb, nl.XFRM_MSG_GETSA, reqFlags, seq, sa.ID)
	var e kernelops.SAEntry
	var meta saMeta
	err = s.request(ctx, mb.buf, seq, func(m nlMsg) error { return decodeSA(m.Data, &e, &meta) })
	switch {
	case err != nil:
		fail("read back: %v", err)
	case e.Counters.Packets == 0:
		fail("the probe packet did not reach the SA")
	default:
		k.LastUsedProbed = true
		k.LastUsed = !e.Counters.LastUsed.IsZero()
	}
}
