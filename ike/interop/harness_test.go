package interop

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/internal/lab"
	"github.com/keyplane/keyplane/internal/swan"
	"github.com/keyplane/keyplane/kernelops"
)

const psk = "keyplane-interop-psk"

// Inner addresses: each side's traffic selector (10.10.1.1 keyplane's,
// 10.10.2.1 charon's), held on the namespaces' loopbacks.
var (
	innerK = netip.MustParseAddr("10.10.1.1")
	innerS = netip.MustParseAddr("10.10.2.1")
)

type suite struct {
	ike, esp string
	encr, dh string
	encap    bool // force UDP encapsulation on charon's side
	name     string
}

var suites = []suite{
	{ike: "aes128gcm16-prfsha256-x25519", esp: "aes128gcm16", encr: "AES_GCM_16", dh: "CURVE_25519"},
	{ike: "aes256-sha256-ecp256", esp: "aes256-sha256", encr: "AES_CBC", dh: "ECP_256"},
}

func (s suite) String() string {
	if s.name != "" {
		return s.name
	}
	return s.ike
}

func scale(d time.Duration) time.Duration {
	if lab.InVM() {
		return 4 * d
	}
	return d
}

// logBuf keeps keyplane's log for failures.
type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if os.Getenv("KEYPLANE_TEST_LOG") != "" {
		os.Stderr.Write(p)
	}
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// keyplane is the engine under test in namespace A.
type keyplane struct {
	e   *ike.Engine
	b   kernelops.Backend
	log *logBuf
}

func keyplaneConfig(t *testing.T, p *lab.Pair, s suite, backend, netns string, childExtra ...string) *config.Config {
	t.Helper()
	params := ""
	if netns != "" {
		params = fmt.Sprintf("params {\n\t\tnetns = %s\n\t}", netns)
	}
	src := fmt.Sprintf(`
daemon {
	retransmit_timeout = 2s
	retransmit_tries = 4
	log_level = debug
}
backend {
	name = %s
	%s
}
connections {
	peer {
		local_addrs = %s
		remote_addrs = %s
		proposals = %s
		psk_env = KP_PSK
		local {
			id = a.keyplane.test
		}
		remote {
			id = b.keyplane.test
		}
		children {
			net {
				local_ts = %s/32
				remote_ts = %s/32
				esp_proposals = %s
				%s
			}
		}
	}
}
`, backend, params, p.A4, p.B4, s.ike, innerK, innerS, s.esp, strings.Join(childExtra, "\n"))
	cfg, err := config.Parse("interop.conf", []byte(src), config.Options{Getenv: func(k string) (string, bool) {
		return psk, k == "KP_PSK"
	}})
	if err != nil {
		t.Fatalf("%v\n%s", err, src)
	}
	return cfg
}

// inNS is a test double around the nokernel model that opens its IKE
// sockets inside a network namespace (the model itself has no netns
// notion; its sockets are real ones of the calling thread's namespace).
type inNS struct {
	*nokernel.Backend
	ns *lab.NS
}

func (n *inNS) ListenIKE(ctx context.Context, l kernelops.IKEListen) (kernelops.IKEConn, error) {
	var c kernelops.IKEConn
	err := n.ns.Do(func() error {
		var err error
		c, err = n.Backend.ListenIKE(ctx, l)
		return err
	})
	return c, err
}

func startKeyplane(t *testing.T, cfg *config.Config, b kernelops.Backend) *keyplane {
	t.Helper()
	lb := &logBuf{}
	log := slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e, err := ike.New(t.Context(), ike.Options{Backend: b, Config: cfg, Logger: log})
	if err != nil {
		t.Fatalf("keyplane: %v", err)
	}
	k := &keyplane{e: e, b: b, log: lb}
	t.Cleanup(func() {
		e.Close()
		if t.Failed() {
			t.Logf("keyplane log:\n%s", tailLines(lb.String(), 60))
		}
	})
	return k
}

func tailLines(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// charonConn is charon's side (namespace B) of the connection.
func charonConn(p *lab.Pair, s suite) swan.Conn {
	return swan.Conn{Name: "kp", PSK: psk, IKEProposal: s.ike, ESPProposal: s.esp,
		LocalID: "b.keyplane.test", RemoteID: "a.keyplane.test", Local: p.B4.String(), Remote: p.A4.String(),
		LocalTS: []string{innerS.String() + "/32"}, RemoteTS: []string{innerK.String() + "/32"}, Encap: s.encap}
}

func (k *keyplane) child(t *testing.T) (ike.IKESAInfo, ike.ChildInfo, bool) {
	sas, err := k.e.IKESAs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, sa := range sas {
		for _, ch := range sa.Children {
			if ch.State == "installed" && sa.State == "established" {
				return sa, ch, true
			}
		}
	}
	return ike.IKESAInfo{}, ike.ChildInfo{}, false
}

func (k *keyplane) waitChild(t *testing.T, ctx context.Context) (ike.IKESAInfo, ike.ChildInfo) {
	t.Helper()
	for {
		if sa, ch, ok := k.child(t); ok {
			return sa, ch
		}
		select {
		case <-ctx.Done():
			t.Fatalf("keyplane has no installed child: %v", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// terminate deletes the IKE SA from charon's side (byCharon) or
// keyplane's, and waits until neither lists it.
func terminate(t *testing.T, ctx context.Context, c *swan.Charon, k *keyplane, byCharon bool) {
	t.Helper()
	if byCharon {
		if err := c.Terminate(ctx, "kp"); err != nil {
			t.Fatal(err)
		}
	} else if err := k.e.Terminate(ctx, "peer"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitGone(ctx, "kp"); err != nil {
		t.Fatal(err)
	}
	k.waitNoSAs(t, ctx)
}

func (k *keyplane) waitNoSAs(t *testing.T, ctx context.Context) {
	t.Helper()
	for {
		sas, err := k.e.IKESAs(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(sas) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("keyplane still has IKE SAs: %+v", sas)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// dataplaneCounts counts keyplane's SAs and policies in its dataplane.
func (k *keyplane) dataplaneCounts(t *testing.T) (int, int) {
	sad, _ := k.b.(kernelops.SAD)
	spd, _ := k.b.(kernelops.SPD)
	n, m := 0, 0
	for _, err := range sad.SAs(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	for _, err := range spd.Policies(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		m++
	}
	return n, m
}

// checkCrosswise compares keyplane's and charon's view of the same SAs.
func checkCrosswise(t *testing.T, k ike.IKESAInfo, kc ike.ChildInfo, c swan.IKESA, s suite) {
	t.Helper()
	cc, ok := c.Child("kp")
	if !ok {
		t.Fatalf("charon lists no child kp: %v", c)
	}
	if !strings.EqualFold(kc.SPIIn, cc.SPIOut) || !strings.EqualFold(kc.SPIOut, cc.SPIIn) {
		t.Errorf("child SPIs not crosswise: keyplane in %s out %s, charon in %s out %s", kc.SPIIn, kc.SPIOut, cc.SPIIn, cc.SPIOut)
	}
	spis := []string{strings.ToLower(c.LocalSPI), strings.ToLower(c.RemoteSPI)}
	if !(spis[0] == k.SPIi || spis[0] == k.SPIr) || !(spis[1] == k.SPIi || spis[1] == k.SPIr) {
		t.Errorf("IKE SPIs differ: keyplane %s/%s, charon %v", k.SPIi, k.SPIr, spis)
	}
	if c.EncrAlg != s.encr || c.DHGroup != s.dh {
		t.Errorf("charon negotiated %s/%s, want %s/%s", c.EncrAlg, c.DHGroup, s.encr, s.dh)
	}
	if kc.LocalTS != innerK.String()+"/32" || kc.RemoteTS != innerS.String()+"/32" {
		t.Errorf("keyplane's selectors %s <-> %s", kc.LocalTS, kc.RemoteTS)
	}
}
