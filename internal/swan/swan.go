package swan

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/keyplane/keyplane/internal/lab"
)

// Mode selects charon's IPsec dataplane.
type Mode int

const (
	// LibIPsec is userspace ESP over a TUN device (plugin kernel-libipsec),
	// for the host whose kernel has no ESP. It needs an address inside the
	// local traffic selector in the namespace and UDP-encapsulated ESP
	// (the rig forces encap = yes).
	LibIPsec Mode = iota + 1
	// KernelNetlink is kernel ESP through XFRM (plugin kernel-netlink), for
	// the VM lab.
	KernelNetlink
)

func (m Mode) String() string {
	switch m {
	case LibIPsec:
		return "kernel-libipsec"
	case KernelNetlink:
		return "kernel-netlink"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// DefaultMode is the dataplane that works where the test runs: KernelNetlink
// inside the VM lab, LibIPsec elsewhere. Options.Mode 0 means DefaultMode().
func DefaultMode() Mode {
	if lab.InVM() {
		return KernelNetlink
	}
	return LibIPsec
}

// Conn is one swanctl connection with one child.
type Conn struct {
	Name  string // swanctl connection name; the child is named Name too unless Child is set
	Child string

	Local, Remote         string // addresses, comma-separated lists allowed; Remote may be "%any"; empty: %any
	LocalPort, RemotePort int    // 0: LocalPort the instance's Options.Port, RemotePort 500
	LocalID, RemoteID     string // empty: charon's default (local: the address; remote: %any)
	PSK                   string // pre-shared key for both directions; empty: the conn has no secret of its own

	IKEProposal, ESPProposal string   // swanctl syntax, e.g. "aes128gcm16-prfsha256-x25519", "aes256-sha256-ecp256"; comma-separated lists allowed; empty: default
	LocalTS, RemoteTS        []string // empty: dynamic

	StartAction string        // "none" (default) | "start" | "trap"
	Mode        string        // "tunnel" (default) | "transport"
	Encap       bool          // force UDP encapsulation (always on in LibIPsec mode)
	Rekey       time.Duration // IKE and child rekey_time; 0: strongSwan's default

	// Pubkey, if set, makes both ends authenticate with certificates
	// instead of the PSK.
	Pubkey *Pubkey

	// Extra holds more swanctl.conf keys for the connection. A dotted key
	// addresses a subsection: "dpd_delay", "local.id", "children.kp.dpd_action";
	// "child.KEY" is short for "children.<child>.KEY". Values of keys that
	// swanctl treats as lists (proposals, local_ts, local_addrs, ...) are
	// split on commas. Extra wins over the fields above.
	Extra map[string]string
}

// Pubkey is charon's certificate authentication for a Conn (local and
// remote auth = pubkey). PEM everywhere (DER works too).
type Pubkey struct {
	Cert    []byte   // charon's certificate (local.certs)
	Key     []byte   // its private key (vici load-key)
	OwnCAs  [][]byte // the CAs that issue Cert, intermediate and root (vici load-cert, flag CA), so charon can send its chain
	CACerts [][]byte // the CAs trusted for the peer (remote.cacerts)
	CRLs    [][]byte // CRLs for charon's revocation checks (vici load-cert X509_CRL)
	// Revocation is remote.revocation (strict, ifuri, relaxed; empty:
	// charon's default, relaxed).
	Revocation string
}

// ChildName is the child's name: Child, or Name when Child is empty.
func (c Conn) ChildName() string {
	if c.Child != "" {
		return c.Child
	}
	return c.Name
}

// Options configure one charon instance.
type Options struct {
	NS    *lab.NS // namespace to run in; nil: the test's own namespace
	Mode  Mode    // 0: DefaultMode()
	Conns []Conn

	LogLevel int // charon log level for every subsystem; 0: 2; 4 shows keys

	// Port and PortNATT are charon's IKE ports (charon.port, port_nat_t);
	// 0: 500 and 4500.
	Port, PortNATT int

	// Settings are extra strongswan.conf keys below "charon", dotted for
	// subsections: {"cookie_threshold": "1", "fragment_size": "160",
	// "plugins.kernel-netlink.mtu": "1400"}. They override the rig's
	// defaults (retransmit_tries = 2, retransmit_timeout = 1.0, ...).
	Settings map[string]string

	// StartTimeout bounds the wait for charon's vici socket; 0: 30 s on the
	// host, 120 s in the VM lab (software emulation is slow).
	StartTimeout time.Duration
}

// Paths of the Debian packages; KEYPLANE_CHARON overrides the daemon.
var (
	charonPaths = []string{"/usr/lib/ipsec/charon", "/usr/libexec/ipsec/charon", "/usr/lib/strongswan/charon", "/usr/libexec/strongswan/charon"}
	pluginDirs  = []string{"/usr/lib/ipsec/plugins", "/usr/lib/x86_64-linux-gnu/ipsec/plugins", "/usr/libexec/ipsec/plugins", "/usr/lib/strongswan/plugins"}
)

// packageOf names the Debian package that ships a plugin, for error messages.
var packageOf = map[string]string{
	"kernel-libipsec": "libcharon-extra-plugins",
	"curve25519":      "libstrongswan-extra-plugins",
	"chapoly":         "libstrongswan-extra-plugins",
	"openssl":         "libstrongswan-standard-plugins",
	"gcm":             "libstrongswan-standard-plugins",
}

// charonPath finds the charon daemon.
func charonPath() (string, error) {
	if p := os.Getenv("KEYPLANE_CHARON"); p != "" {
		if isExec(p) {
			return p, nil
		}
		return "", fmt.Errorf("KEYPLANE_CHARON=%s is not an executable file", p)
	}
	for _, p := range charonPaths {
		if isExec(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("charon not found in %s (apt-get install strongswan-charon)", strings.Join(charonPaths, ", "))
}

// pluginDir is the directory holding the plugins next to charon.
func pluginDir(charon string) string {
	dirs := append([]string{filepath.Join(filepath.Dir(charon), "plugins")}, pluginDirs...)
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return d
		}
	}
	return dirs[0]
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// Available returns nil when charon, swanctl, the plugins of both modes and
// the tools the rig runs (ip, unshare, sh, mount) are installed; otherwise
// an error naming what is missing and the Debian package to install. Start
// calls it and skips (host) or fails (VM lab) with that error.
func Available() error {
	var errs []error
	charon, err := charonPath()
	if err != nil {
		errs = append(errs, err)
	} else {
		dir := pluginDir(charon)
		for _, m := range []Mode{LibIPsec, KernelNetlink} {
			for _, p := range plugins(m) {
				so := filepath.Join(dir, "libstrongswan-"+p+".so")
				if _, err := os.Stat(so); err != nil {
					pkg := packageOf[p]
					if pkg == "" {
						pkg = "strongswan-charon"
					}
					errs = append(errs, fmt.Errorf("charon plugin %s missing (%s; apt-get install %s)", p, so, pkg))
				}
			}
		}
	}
	for _, tool := range []struct{ name, pkg string }{
		{"swanctl", "strongswan-swanctl"}, {"ip", "iproute2"}, {"unshare", "util-linux"},
		{"mount", "mount"}, {"sh", "dash"},
	} {
		if _, err := exec.LookPath(tool.name); err != nil {
			errs = append(errs, fmt.Errorf("%s not found (apt-get install %s)", tool.name, tool.pkg))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("strongSwan unavailable: %w", errors.Join(dedup(errs)...))
}

func dedup(errs []error) []error {
	seen := map[string]bool{}
	out := errs[:0]
	for _, e := range errs {
		if !seen[e.Error()] {
			seen[e.Error()] = true
			out = append(out, e)
		}
	}
	return out
}
