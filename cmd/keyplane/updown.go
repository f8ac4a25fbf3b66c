package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
)

// The daemon runs a child's updown command (swanctl's updown) through
// the engine's Hooks: once per pair of negotiated selectors when a CHILD
// SA comes up and when it goes down, by /bin/sh -c, with the PLUTO_*
// variables strongSwan's scripts read. A rekey runs nothing: the new
// CHILD SA carries the same selectors, as in strongSwan.

const (
	// updownTimeout ends a command that hangs; updownWait is how long
	// its output may stay open after (a background child of the script).
	updownTimeout = 30 * time.Second
	updownWait    = 2 * time.Second
	// updownOutput is how much of a command's output is logged.
	updownOutput = 4096
	// updownPairs bounds the runs per event (selectors that are ranges
	// split into many prefixes).
	updownPairs = 64
	// updownPath is the only inherited-looking variable: the daemon's
	// own environment (which may hold psk_env secrets) is not passed.
	updownPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// updownHooks implements ike.Hooks with the running configuration's
// updown commands.
type updownHooks struct {
	config  func() *config.Config
	log     *slog.Logger
	timeout time.Duration // 0: updownTimeout
	// names: the children that may have an updown command (nil: any),
	// for the engine's filter (ike.HookFilter).
	names *updownNames
}

// WantsChild is ike.HookFilter: the engine calls it on its loop, which a
// reload waits for while it holds the daemon's lock, so it reads the
// snapshot names instead of the configuration. run still checks the
// configuration of the moment.
func (h updownHooks) WantsChild(name string) bool { return h.names.wants(name) }

// updownNames is a snapshot of the child names with an updown command,
// replaced as a whole at start and around a reload.
type updownNames struct {
	p atomic.Pointer[map[string]bool]
}

// set makes the names those of the configurations cfgs (all of them: a
// reload sets both the running and the new one until it is done).
func (u *updownNames) set(cfgs ...*config.Config) {
	if u == nil {
		return
	}
	m := map[string]bool{}
	for _, cfg := range cfgs {
		for _, c := range cfg.Connections {
			for _, ch := range c.Children {
				if ch.Updown != "" {
					m[ch.Name] = true
				}
			}
		}
	}
	u.p.Store(&m)
}

func (u *updownNames) wants(name string) bool {
	if u == nil {
		return true
	}
	m := u.p.Load()
	return m == nil || (*m)[name]
}

func (h updownHooks) ChildUp(i ike.ChildHookInfo)   { h.run(true, i) }
func (h updownHooks) ChildDown(i ike.ChildHookInfo) { h.run(false, i) }

func (h updownHooks) run(up bool, i ike.ChildHookInfo) {
	if i.Rekeyed {
		return
	}
	cfg := h.config()
	if cfg == nil {
		return
	}
	_, ch := cfg.Child(i.Child)
	if ch == nil || ch.Updown == "" {
		return
	}
	envs := updownEnvs(up, i)
	if len(envs) > updownPairs {
		h.log.Warn("updown: too many selector pairs, running the first ones", "child", i.Child, "pairs", len(envs), "run", updownPairs)
		envs = envs[:updownPairs]
	}
	for _, env := range envs {
		h.exec(ch.Updown, i, env)
	}
}

func (h updownHooks) exec(command string, i ike.ChildHookInfo, env []string) {
	limit := h.timeout
	if limit == 0 {
		limit = updownTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Env = env
	cmd.WaitDelay = updownWait
	out := &capped{max: updownOutput}
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	err := cmd.Run()
	verb := env[1][len("PLUTO_VERB="):]
	args := []any{"child", i.Child, "child-id", i.ChildID, "verb", verb, "took", time.Since(start).Round(time.Millisecond)}
	if out.Len() > 0 {
		args = append(args, "output", strings.TrimRight(out.String(), "\n"))
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (ended after %v)", err, limit)
		}
		h.log.Warn("updown command failed", append(args, "command", command, "err", err)...)
		return
	}
	h.log.Debug("updown command ran", args...)
}

// updownEnvs is the environment of each run for one event: one per pair
// of local and remote selector prefixes. The first two entries are PATH
// and PLUTO_VERB.
func updownEnvs(up bool, i ike.ChildHookInfo) [][]string {
	var out [][]string
	for _, ls := range i.LocalSelectors {
		for _, lp := range ls.Prefixes {
			for _, rs := range i.RemoteSelectors {
				for _, rp := range rs.Prefixes {
					out = append(out, updownEnv(up, i, ls, lp, rs, rp))
				}
			}
		}
	}
	return out
}

func updownEnv(up bool, i ike.ChildHookInfo, ls ike.Selector, lp netip.Prefix, rs ike.Selector, rp netip.Prefix) []string {
	verb := "down"
	if up {
		verb = "up"
	}
	// -host: the local selector is this host's own address (a transport
	// or host-to-host tunnel), else -client (a subnet behind us).
	if lp.IsSingleIP() && lp.Addr() == i.Local {
		verb += "-host"
	} else {
		verb += "-client"
	}
	if lp.Addr().Is6() {
		verb += "-v6"
	}
	env := []string{
		updownPath,
		"PLUTO_VERB=" + verb,
		"PLUTO_VERSION=1.1",
		"PLUTO_CONNECTION=" + clean(i.Child),
		"PLUTO_REQID=" + strconv.FormatUint(uint64(i.ReqID), 10),
		"PLUTO_PROTO=esp",
		"PLUTO_UNIQUEID=" + strconv.FormatUint(uint64(i.IKEID), 10),
		"PLUTO_ME=" + i.Local.String(),
		"PLUTO_MY_ID=" + clean(i.LocalID),
		"PLUTO_MY_CLIENT=" + lp.String(),
		"PLUTO_MY_PORT=" + onePort(ls),
		"PLUTO_MY_PROTOCOL=" + strconv.Itoa(int(ls.Proto)),
		"PLUTO_PEER=" + i.Remote.String(),
		"PLUTO_PEER_ID=" + clean(i.RemoteID),
		"PLUTO_PEER_CLIENT=" + rp.String(),
		"PLUTO_PEER_PORT=" + onePort(rs),
		"PLUTO_PEER_PROTOCOL=" + strconv.Itoa(int(rs.Proto)),
	}
	if i.UDPEncapPort != 0 {
		env = append(env, "PLUTO_UDP_ENC="+strconv.Itoa(int(i.UDPEncapPort)))
	}
	env = append(env, sourceIPs("PLUTO_MY_SOURCEIP", i.VIPs)...)
	env = append(env, sourceIPs("PLUTO_PEER_SOURCEIP", i.PeerVIPs)...)
	return env
}

// sourceIPs are the virtual IPs as strongSwan's updown names them: the
// first as NAME, each as NAME4_n or NAME6_n (n from 1 per family).
func sourceIPs(name string, vips []netip.Addr) []string {
	if len(vips) == 0 {
		return nil
	}
	out := []string{name + "=" + vips[0].String()}
	n4, n6 := 0, 0
	for _, v := range vips {
		if v.Is4() {
			n4++
			out = append(out, name+"4_"+strconv.Itoa(n4)+"="+v.String())
		} else {
			n6++
			out = append(out, name+"6_"+strconv.Itoa(n6)+"="+v.String())
		}
	}
	return out
}

// onePort is a selector's port if it names one, else 0 (as strongSwan).
func onePort(s ike.Selector) string {
	if s.FromPort == s.ToPort {
		return strconv.Itoa(int(s.FromPort))
	}
	return "0"
}

// clean makes a value safe for the environment: an identity comes from
// the peer and may hold any byte (a NUL would fail the run, a newline
// confuse a script).
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// capped keeps the first max bytes written to it. The buffer is a field,
// not embedded: an embedded bytes.Buffer's ReadFrom would let io.Copy
// (exec's output copier) bypass Write and the cap.
type capped struct {
	buf bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *capped) Len() int       { return c.buf.Len() }
func (c *capped) String() string { return c.buf.String() }
