package swan

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/strongswan/govici/vici"
)

// plugins is charon's explicit plugin list for a mode: only what PSK and
// certificate authentication (X.509, PEM, PKCS#1/#8 keys, CRL revocation
// checks), the proposals tests use (AES-CBC/GCM, ChaCha20-Poly1305,
// SHA-1/2 HMAC and PRFs, MODP, ECP, Curve25519), vici and the dataplane
// need. kernel-libipsec comes before kernel-netlink so that it provides the
// IPsec interface while kernel-netlink still provides routes and addresses.
// vici comes last, so that its answering means the IKE sockets and the
// dataplane are already up (Start also checks the sockets).
func plugins(m Mode) []string {
	p := []string{"random", "nonce", "openssl", "aes", "sha1", "sha2", "hmac", "gcm", "chapoly",
		"curve25519", "gmp", "kdf", "x509", "pem", "pkcs1", "pkcs8", "pubkey", "revocation", "constraints",
		"socket-default"}
	if m == LibIPsec {
		p = append(p, "kernel-libipsec")
	}
	return append(p, "kernel-netlink", "vici")
}

// tree is an ordered configuration section: the same shape serves
// strongswan.conf (rendered as text) and vici messages (converted to
// *vici.Message). Values are string, []string or *tree.
type tree struct {
	keys []string
	vals map[string]any
}

func newTree() *tree { return &tree{vals: map[string]any{}} }

func (t *tree) set(key string, v any) {
	if _, ok := t.vals[key]; !ok {
		t.keys = append(t.keys, key)
	}
	t.vals[key] = v
}

// sub returns the subsection key, creating it (or replacing a value of
// another type) when needed.
func (t *tree) sub(key string) *tree {
	if s, ok := t.vals[key].(*tree); ok {
		return s
	}
	s := newTree()
	t.set(key, s)
	return s
}

// setPath sets a dotted key, creating subsections on the way.
func (t *tree) setPath(path string, v any) {
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		t = t.sub(p)
	}
	t.set(parts[len(parts)-1], v)
}

// get returns the value at a dotted path, or nil.
func (t *tree) get(path string) any {
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		s, ok := t.vals[p].(*tree)
		if !ok {
			return nil
		}
		t = s
	}
	return t.vals[parts[len(parts)-1]]
}

// render writes t in strongswan.conf syntax.
func (t *tree) render(b *strings.Builder, indent string) {
	for _, k := range t.keys {
		switch v := t.vals[k].(type) {
		case string:
			fmt.Fprintf(b, "%s%s = %s\n", indent, k, quoteConf(v))
		case []string:
			fmt.Fprintf(b, "%s%s = %s\n", indent, k, quoteConf(strings.Join(v, ",")))
		case *tree:
			fmt.Fprintf(b, "%s%s {\n", indent, k)
			v.render(b, indent+"\t")
			fmt.Fprintf(b, "%s}\n", indent)
		}
	}
}

// quoteConf quotes a strongswan.conf value when it holds characters the
// parser would otherwise interpret (braces, comments, quotes, spaces at the
// ends, newlines).
func quoteConf(v string) string {
	if v != "" && !strings.ContainsAny(v, "{}#\"\\\n") && strings.TrimSpace(v) == v {
		return v
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(v) + `"`
}

// message converts t to a vici message.
func (t *tree) message() (*vici.Message, error) {
	m := vici.NewMessage()
	for _, k := range t.keys {
		var v any = t.vals[k]
		if s, ok := v.(*tree); ok {
			sm, err := s.message()
			if err != nil {
				return nil, err
			}
			v = sm
		}
		if err := m.Set(k, v); err != nil {
			return nil, fmt.Errorf("swan: vici key %s: %w", k, err)
		}
	}
	return m, nil
}

// listKeys are the swanctl.conf keys whose values are lists; Extra values
// for them are split on commas, as swanctl does.
var listKeys = map[string]bool{
	"local_addrs": true, "remote_addrs": true, "proposals": true, "esp_proposals": true,
	"ah_proposals": true, "local_ts": true, "remote_ts": true, "vips": true, "pools": true,
	"groups": true, "cert_policy": true, "certs": true, "cacerts": true, "pubkeys": true,
	"owners": true,
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// seconds renders a duration for swanctl: whole seconds, at least 1.
func seconds(d float64) string {
	return strconv.FormatInt(int64(math.Max(1, math.Ceil(d))), 10) + "s"
}

// config is what an instance is built from.
type config struct {
	mode     Mode
	conf     string                   // strongswan.conf text
	conns    map[string]*vici.Message // load-conn messages by connection name
	secrets  []*vici.Message          // load-shared messages
	order    []string                 // connection names in Options order
	port     int                      // charon.port
	portNATT int                      // charon.port_nat_t

	mu      sync.Mutex        // guards childOf (LoadConn adds to it)
	childOf map[string]string // child name → connection name
}

// connOf returns the connection a child belongs to.
func (c *config) connOf(child string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ike, ok := c.childOf[child]
	return ike, ok
}

// strongswanConf builds the charon section for o, with the vici socket at
// socket (a unix:// URI).
func strongswanConf(o Options, mode Mode, socket string) (string, error) {
	level := o.LogLevel
	if level == 0 {
		level = 2
	}
	if level < -1 || level > 4 {
		return "", fmt.Errorf("swan: Options.LogLevel %d not in -1..4", o.LogLevel)
	}
	port, natt := o.Port, o.PortNATT
	if port == 0 {
		port = 500
	}
	if natt == 0 {
		natt = 4500
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"Port", port}, {"PortNATT", natt}} {
		if p.v < 1 || p.v > 65535 {
			return "", fmt.Errorf("swan: Options.%s %d not a UDP port", p.name, p.v)
		}
	}
	if port == natt {
		return "", fmt.Errorf("swan: Options.Port and PortNATT are both %d", port)
	}
	c := newTree()
	c.set("load", strings.Join(plugins(mode), " "))
	c.set("port", strconv.Itoa(port))
	c.set("port_nat_t", strconv.Itoa(natt))
	// Fail fast: 1 s, then 1.4 s, then give up after 2 retransmits
	// (about 4.4 s) instead of charon's 165 s.
	c.set("retransmit_tries", "2")
	c.set("retransmit_timeout", "1.0")
	c.set("retransmit_base", "1.4")
	c.set("retransmit_jitter", "0")
	c.set("install_virtual_ip", "no")
	// charon.threads stays at its default of 16: about 9 threads block for
	// good (receiver, sender, scheduler, watcher, kernel-netlink, libipsec's
	// TUN and ESP workers); with 8, vici clients were never served.
	// Live log on stderr, read by the rig through a pipe: the filelog file
	// may only be written at shutdown.
	lg := c.sub("filelog").sub("rig")
	lg.set("path", "stderr")
	lg.set("default", strconv.Itoa(level))
	// From level 2 on, job logs every watcher wake-up and enc/asn every
	// encoding rule, burying the exchanges; they stay at 1 (Settings
	// "filelog.rig.enc" etc. raise them).
	for _, noisy := range []string{"job", "enc", "asn"} {
		lg.set(noisy, strconv.Itoa(min(level, 1)))
	}
	lg.set("time_format", "%H:%M:%S")
	lg.set("time_add_ms", "yes")
	lg.set("ike_name", "yes")
	lg.set("flush_line", "yes")
	c.sub("plugins").sub("vici").set("socket", socket)
	keys := make([]string, 0, len(o.Settings))
	for k := range o.Settings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k == "" || strings.HasPrefix(k, ".") || strings.HasSuffix(k, ".") || strings.Contains(k, "..") {
			return "", fmt.Errorf("swan: Options.Settings key %q malformed", k)
		}
		c.setPath(k, o.Settings[k])
	}
	root := newTree()
	root.set("charon", c)
	var b strings.Builder
	b.WriteString("# generated by keyplane internal/swan; self-contained, reads no /etc/strongswan*\n")
	root.render(&b, "")
	return b.String(), nil
}

// buildConfig validates o and builds the instance's configuration.
func buildConfig(o Options, socket string) (*config, error) {
	mode := o.Mode
	if mode == 0 {
		mode = DefaultMode()
	}
	if mode != LibIPsec && mode != KernelNetlink {
		return nil, fmt.Errorf("swan: Options.Mode %d unknown", int(o.Mode))
	}
	conf, err := strongswanConf(o, mode, socket)
	if err != nil {
		return nil, err
	}
	cfg := &config{mode: mode, conf: conf, conns: map[string]*vici.Message{}, childOf: map[string]string{},
		port: cmp.Or(o.Port, 500), portNATT: cmp.Or(o.PortNATT, 4500)}
	for i, c := range o.Conns {
		m, err := connMessage(c, mode, o.Port)
		if err != nil {
			return nil, fmt.Errorf("swan: Options.Conns[%d]: %w", i, err)
		}
		if _, dup := cfg.conns[c.Name]; dup {
			return nil, fmt.Errorf("swan: Options.Conns[%d].Name %q used twice", i, c.Name)
		}
		if other, dup := cfg.childOf[c.ChildName()]; dup {
			return nil, fmt.Errorf("swan: Options.Conns[%d]: child %q also in connection %q", i, c.ChildName(), other)
		}
		cfg.conns[c.Name] = m
		cfg.order = append(cfg.order, c.Name)
		cfg.childOf[c.ChildName()] = c.Name
		if s := secretMessage(c); s != nil {
			cfg.secrets = append(cfg.secrets, s)
		}
	}
	return cfg, nil
}

// connTree is the swanctl connection section of c (without its name).
func connTree(c Conn, mode Mode, port int) (*tree, error) {
	if c.Name == "" {
		return nil, fmt.Errorf("Name empty")
	}
	if strings.ContainsAny(c.Name, ". \t\n{}") || strings.ContainsAny(c.ChildName(), ". \t\n{}") {
		return nil, fmt.Errorf("Name/Child %q: no dots, spaces or braces", c.ChildName())
	}
	switch c.StartAction {
	case "", "none", "start", "trap":
	default:
		return nil, fmt.Errorf("StartAction %q not one of none, start, trap", c.StartAction)
	}
	switch c.Mode {
	case "", "tunnel", "transport", "beet", "pass", "drop":
	default:
		return nil, fmt.Errorf("Mode %q not one of tunnel, transport, beet, pass, drop", c.Mode)
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"LocalPort", c.LocalPort}, {"RemotePort", c.RemotePort}} {
		if p.v < 0 || p.v > 65535 {
			return nil, fmt.Errorf("%s %d not a UDP port", p.name, p.v)
		}
	}
	if c.Rekey < 0 {
		return nil, fmt.Errorf("Rekey %v negative", c.Rekey)
	}
	t := newTree()
	t.set("version", "2")
	if c.Local != "" {
		t.set("local_addrs", splitList(c.Local))
	}
	if c.Remote != "" {
		t.set("remote_addrs", splitList(c.Remote))
	}
	if c.LocalPort != 0 {
		t.set("local_port", strconv.Itoa(c.LocalPort))
	} else if port != 0 {
		t.set("local_port", strconv.Itoa(port))
	}
	if c.RemotePort != 0 {
		t.set("remote_port", strconv.Itoa(c.RemotePort))
	}
	if c.IKEProposal != "" {
		t.set("proposals", splitList(c.IKEProposal))
	}
	if c.Encap || mode == LibIPsec {
		t.set("encap", "yes")
	}
	if c.Rekey > 0 {
		t.set("rekey_time", seconds(c.Rekey.Seconds()))
	}
	for _, side := range []struct{ name, id string }{{"local", c.LocalID}, {"remote", c.RemoteID}} {
		s := t.sub(side.name)
		s.set("auth", "psk")
		if pk := c.Pubkey; pk != nil {
			s.set("auth", "pubkey")
			if side.name == "local" {
				s.set("certs", []string{string(pk.Cert)})
			} else {
				var cas []string
				for _, ca := range pk.CACerts {
					cas = append(cas, string(ca))
				}
				s.set("cacerts", cas)
				if pk.Revocation != "" {
					s.set("revocation", pk.Revocation)
				}
			}
		}
		if side.id != "" {
			s.set("id", side.id)
		}
	}
	ch := t.sub("children").sub(c.ChildName())
	if len(c.LocalTS) > 0 {
		ch.set("local_ts", slices.Clone(c.LocalTS))
	}
	if len(c.RemoteTS) > 0 {
		ch.set("remote_ts", slices.Clone(c.RemoteTS))
	}
	if c.ESPProposal != "" {
		ch.set("esp_proposals", splitList(c.ESPProposal))
	}
	if c.StartAction != "" {
		ch.set("start_action", c.StartAction)
	}
	if c.Mode != "" {
		ch.set("mode", c.Mode)
	}
	if c.Rekey > 0 {
		ch.set("rekey_time", seconds(c.Rekey.Seconds()))
	}
	keys := make([]string, 0, len(c.Extra))
	for k := range c.Extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k == "" || strings.HasPrefix(k, ".") || strings.HasSuffix(k, ".") || strings.Contains(k, "..") {
			return nil, fmt.Errorf("Extra key %q malformed", k)
		}
		path := k
		if rest, ok := strings.CutPrefix(k, "child."); ok {
			path = "children." + c.ChildName() + "." + rest
		}
		var v any = c.Extra[k]
		if listKeys[path[strings.LastIndexByte(path, '.')+1:]] {
			v = splitList(c.Extra[k])
		}
		t.setPath(path, v)
	}
	return t, nil
}

// connMessage is the load-conn message for c.
func connMessage(c Conn, mode Mode, port int) (*vici.Message, error) {
	t, err := connTree(c, mode, port)
	if err != nil {
		return nil, err
	}
	root := newTree()
	root.set(c.Name, t)
	return root.message()
}

// secretMessage is the load-shared message for c's PSK, owned by the IDs
// that are set; nil without a PSK.
func secretMessage(c Conn) *vici.Message {
	if c.PSK == "" {
		return nil
	}
	m := vici.NewMessage()
	_ = m.Set("id", "psk-"+c.Name)
	_ = m.Set("type", "IKE")
	_ = m.Set("data", c.PSK)
	var owners []string
	for _, id := range []string{c.LocalID, c.RemoteID} {
		if id != "" && id != "%any" && !slices.Contains(owners, id) {
			owners = append(owners, id)
		}
	}
	if len(owners) > 0 {
		_ = m.Set("owners", owners)
	}
	return m
}
