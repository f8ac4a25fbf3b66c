package swan

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/strongswan/govici/vici"
)

// timeoutMS is vici's "timeout" argument for ctx: the milliseconds left
// until its deadline (charon answers before govici gives up), 0 (wait
// until done) without one.
func timeoutMS(ctx context.Context) string {
	dl, ok := ctx.Deadline()
	if !ok {
		return "0"
	}
	ms := time.Until(dl).Milliseconds() - 100
	if ms < 1 {
		ms = 1
	}
	return strconv.FormatInt(ms, 10)
}

// Initiate initiates the child SA child (and its IKE SA if there is none)
// and waits until charon reports success or failure, or ctx ends.
func (c *Charon) Initiate(ctx context.Context, child string) error {
	m := vici.NewMessage()
	_ = m.Set("child", child)
	if ike, ok := c.cfg.connOf(child); ok {
		_ = m.Set("ike", ike)
	}
	_ = m.Set("timeout", timeoutMS(ctx))
	if _, err := c.call(ctx, "initiate", m); err != nil {
		return fmt.Errorf("swan: initiate %s: %w", child, err)
	}
	return nil
}

// Terminate deletes the IKE SAs of connection ike (sending DELETE) and
// waits for the peer's answer or charon's retransmission limit.
func (c *Charon) Terminate(ctx context.Context, ike string) error {
	m := vici.NewMessage()
	_ = m.Set("ike", ike)
	_ = m.Set("timeout", timeoutMS(ctx))
	if _, err := c.call(ctx, "terminate", m); err != nil {
		return fmt.Errorf("swan: terminate IKE %s: %w", ike, err)
	}
	return nil
}

// TerminateChild deletes the child SAs named child.
func (c *Charon) TerminateChild(ctx context.Context, child string) error {
	m := vici.NewMessage()
	_ = m.Set("child", child)
	_ = m.Set("timeout", timeoutMS(ctx))
	if _, err := c.call(ctx, "terminate", m); err != nil {
		return fmt.Errorf("swan: terminate child %s: %w", child, err)
	}
	return nil
}

// RekeyIKE starts a rekeying of connection ike's IKE SA (it returns once
// charon has queued it; watch ListSAs for the result).
func (c *Charon) RekeyIKE(ctx context.Context, ike string) error {
	m := vici.NewMessage()
	_ = m.Set("ike", ike)
	if _, err := c.call(ctx, "rekey", m); err != nil {
		return fmt.Errorf("swan: rekey IKE %s: %w", ike, err)
	}
	return nil
}

// RekeyChild starts a rekeying of the child SAs named child.
func (c *Charon) RekeyChild(ctx context.Context, child string) error {
	m := vici.NewMessage()
	_ = m.Set("child", child)
	if _, err := c.call(ctx, "rekey", m); err != nil {
		return fmt.Errorf("swan: rekey child %s: %w", child, err)
	}
	return nil
}

// LoadConn loads (or replaces) a connection and its PSK in the running
// instance.
func (c *Charon) LoadConn(ctx context.Context, conn Conn) error {
	if other, ok := c.cfg.connOf(conn.ChildName()); ok && other != conn.Name {
		return fmt.Errorf("swan: LoadConn %s: child %q belongs to connection %q", conn.Name, conn.ChildName(), other)
	}
	port := 0
	if p := c.cfg.port; p != 500 {
		port = p
	}
	m, err := connMessage(conn, c.cfg.mode, port)
	if err != nil {
		return fmt.Errorf("swan: LoadConn: %w", err)
	}
	if s := secretMessage(conn); s != nil { // first: start_action = start initiates at once
		if _, err := c.call(ctx, "load-shared", s); err != nil {
			return fmt.Errorf("swan: load-shared for %s: %w", conn.Name, err)
		}
	}
	if _, err := c.call(ctx, "load-conn", m); err != nil {
		return fmt.Errorf("swan: load-conn %s: %w", conn.Name, err)
	}
	c.cfg.mu.Lock()
	c.cfg.childOf[conn.ChildName()] = conn.Name
	c.cfg.mu.Unlock()
	return nil
}

// UnloadConn removes a connection (established SAs stay).
func (c *Charon) UnloadConn(ctx context.Context, name string) error {
	m := vici.NewMessage()
	_ = m.Set("name", name)
	if _, err := c.call(ctx, "unload-conn", m); err != nil {
		return fmt.Errorf("swan: unload-conn %s: %w", name, err)
	}
	return nil
}

// Conns returns the names of the connections charon has loaded.
func (c *Charon) Conns(ctx context.Context) ([]string, error) {
	m, err := c.call(ctx, "get-conns", nil)
	if err != nil {
		return nil, fmt.Errorf("swan: get-conns: %w", err)
	}
	var r struct {
		Conns []string `vici:"conns"`
	}
	if err := vici.UnmarshalMessage(m, &r); err != nil {
		return nil, fmt.Errorf("swan: get-conns: %w", err)
	}
	return r.Conns, nil
}

// ListSAs returns every IKE SA with its child SAs, parsed from vici's
// list-sas stream.
func (c *Charon) ListSAs(ctx context.Context) ([]IKESA, error) {
	s, err := c.session(ctx)
	if err != nil {
		return nil, fmt.Errorf("swan: list-sas: %w", c.annotate(err))
	}
	defer s.Close()
	var out []IKESA
	for m, err := range s.CallStreaming(ctx, "list-sas", "list-sa", nil) {
		if err != nil {
			return nil, fmt.Errorf("swan: list-sas: %w", c.annotate(err))
		}
		sas, err := parseListSA(m)
		if err != nil {
			return nil, err
		}
		out = append(out, sas...)
	}
	return out, nil
}

// pollInterval is how often the Wait methods list the SAs.
const pollInterval = 50 * time.Millisecond

// poll calls f every pollInterval until it returns done or an error, or ctx
// ends; the error then names what was last seen.
func poll(ctx context.Context, what string, f func() (done bool, seen string, err error)) error {
	var seen string
	for {
		done, s, err := f()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		seen = s
		select {
		case <-ctx.Done():
			return fmt.Errorf("swan: waiting for %s: %w; last seen: %s", what, ctx.Err(), seen)
		case <-time.After(pollInterval):
		}
	}
}

// settling reports whether a child SA is still being set up.
func settling(ch ChildSA) bool {
	return ch.State == "CREATED" || ch.State == "INSTALLING" || ch.State == "ROUTED"
}

// WaitIKE polls until an IKE SA of connection name is in state (e.g.
// "ESTABLISHED") and none of its child SAs is still being set up, and
// returns it.
func (c *Charon) WaitIKE(ctx context.Context, name, state string) (IKESA, error) {
	var got IKESA
	err := poll(ctx, fmt.Sprintf("IKE SA %s %s", name, state), func() (bool, string, error) {
		sas, err := c.ListSAs(ctx)
		if err != nil {
			return false, "", err
		}
		seen := "no IKE SA"
		for _, sa := range sas {
			if sa.Name != name {
				continue
			}
			seen = sa.String()
			if sa.State != state {
				continue
			}
			ok := true
			for _, ch := range sa.Children {
				ok = ok && !settling(ch)
			}
			if ok {
				got = sa
				return true, "", nil
			}
		}
		return false, seen, nil
	})
	return got, err
}

// WaitChild polls until a child SA named child is in state (e.g.
// "INSTALLED") and returns it with its IKE SA.
func (c *Charon) WaitChild(ctx context.Context, child, state string) (IKESA, ChildSA, error) {
	var gotIKE IKESA
	var gotChild ChildSA
	err := poll(ctx, fmt.Sprintf("child SA %s %s", child, state), func() (bool, string, error) {
		sas, err := c.ListSAs(ctx)
		if err != nil {
			return false, "", err
		}
		seen := "no such child SA"
		for _, sa := range sas {
			for _, ch := range sa.Children {
				if ch.Name != child {
					continue
				}
				seen = sa.String()
				if ch.State == state {
					gotIKE, gotChild = sa, ch
					return true, "", nil
				}
			}
		}
		return false, seen, nil
	})
	return gotIKE, gotChild, err
}

// WaitGone polls until no IKE SA of connection name exists.
func (c *Charon) WaitGone(ctx context.Context, name string) error {
	return poll(ctx, fmt.Sprintf("IKE SA %s gone", name), func() (bool, string, error) {
		sas, err := c.ListSAs(ctx)
		if err != nil {
			return false, "", err
		}
		for _, sa := range sas {
			if sa.Name == name {
				return false, sa.String(), nil
			}
		}
		return true, "", nil
	})
}

// loadCreds loads a connection's private key, its own CAs and the CRLs
// into charon's credential store (vici load-key, load-cert).
func (c *Charon) loadCreds(ctx context.Context, pk *Pubkey) error {
	if pk == nil {
		return nil
	}
	k := vici.NewMessage()
	_ = k.Set("type", "any")
	_ = k.Set("data", string(pk.Key))
	if _, err := c.call(ctx, "load-key", k); err != nil {
		return fmt.Errorf("load-key: %w", err)
	}
	for _, ca := range pk.OwnCAs {
		m := vici.NewMessage()
		_ = m.Set("type", "X509")
		_ = m.Set("flag", "CA")
		_ = m.Set("data", string(ca))
		if _, err := c.call(ctx, "load-cert", m); err != nil {
			return fmt.Errorf("load-cert (CA): %w", err)
		}
	}
	for _, crl := range pk.CRLs {
		m := vici.NewMessage()
		_ = m.Set("type", "X509_CRL")
		_ = m.Set("data", string(crl))
		if _, err := c.call(ctx, "load-cert", m); err != nil {
			return fmt.Errorf("load-cert (CRL): %w", err)
		}
	}
	return nil
}
