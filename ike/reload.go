package ike

import (
	"bytes"
	"context"
	"crypto/subtle"
	"fmt"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/message"
)

// What a reload does to running IKE SAs besides the settings that simply
// apply from then on (engine.go's apply): an IKE SA authenticated under
// settings that changed — the pre-shared key, our identity, a remote.id
// the peer's authenticated identity no longer matches — or whose
// connection is gone, is closed (the peer told with a Delete); the
// children of such a connection with start_action = start are initiated
// again under the new settings. Half-open SAs are given the new
// configuration's candidate connections (IKE_AUTH picks among them), or
// dropped when none is left. After that no SA uses a key of the previous
// configuration, so the caller may wipe it.

// ReloadResult tells what a reload did to the IKE SAs.
type ReloadResult struct {
	Closed []ClosedIKESA `json:"closed,omitempty"`
}

// ClosedIKESA is an IKE SA a reload closed, and why.
type ClosedIKESA struct {
	Name   string `json:"name"`
	SPIs   string `json:"spis"`
	Remote string `json:"remote"`
	State  string `json:"state"` // before the reload
	Reason string `json:"reason"`
}

func (c ClosedIKESA) String() string {
	return fmt.Sprintf("%s %s (%s, %s): %s", c.Name, c.SPIs, c.Remote, c.State, c.Reason)
}

// Reconfigure is Reload that tells which IKE SAs it closed. A cfg that
// fails cfg.Validate is refused with its errors, nothing changed.
func (e *Engine) Reconfigure(ctx context.Context, cfg *config.Config) (ReloadResult, error) {
	if err := cfg.ValidateWith(config.ValidateOptions{ExternalPSK: e.creds != nil, ExternalCerts: e.certCreds != nil}); err != nil {
		return ReloadResult{}, fmt.Errorf("ike: invalid configuration: %w", err)
	}
	var err error
	var res ReloadResult
	if cerr := e.call(ctx, func() {
		e.reloaded = nil
		err = e.apply(ctx, cfg)
		if e.reloaded != nil {
			res = *e.reloaded
		}
		e.reloaded = nil
	}); cerr != nil {
		return ReloadResult{}, cerr
	}
	if err == nil {
		e.log.Info("configuration reloaded", "file", cfg.File, "connections", len(cfg.Connections), "ike-sas-closed", len(res.Closed))
	}
	return res, err
}

// authChanged says why an IKE SA of connection old, authenticated with
// peer (nil: not yet), may not stay up under nc; "" if it may.
func authChanged(old, nc *config.Connection, peer *message.ID) string {
	if subtle.ConstantTimeCompare(old.PSK, nc.PSK) != 1 {
		return "pre-shared key changed"
	}
	if !sameConfigID(old.LocalID, nc.LocalID) {
		return fmt.Sprintf("local.id changed from %s to %s", old.LocalID, nc.LocalID)
	}
	if peer != nil {
		if !nc.RemoteID.Matches(peer.IDType, peer.Data) {
			return fmt.Sprintf("peer identity %s does not match remote.id %s any more", peer, nc.RemoteID)
		}
	} else if !sameConfigID(old.RemoteID, nc.RemoteID) {
		return fmt.Sprintf("remote.id changed from %s to %s", old.RemoteID, nc.RemoteID)
	}
	return ""
}

func sameConfigID(a, b config.Identity) bool {
	return a.Any == b.Any && a.Type == b.Type && bytes.Equal(a.Data, b.Data)
}

// reconfigured is apply's part for what this file and the admission
// control need: runs after cfg became e.cfg and before apply moves the
// remaining SAs to cfg's connections. old is nil at start.
func (e *Engine) reconfigured(old, cfg *config.Config) {
	now := e.clk.Now()
	e.adm.cookies.rotate(now)
	e.adm.in.maxPacket.Store(int64(cfg.Daemon.MaxPacket))
	if old == nil {
		return
	}
	res := &ReloadResult{}
	e.reloaded = res
	restart := map[string]bool{}
	for _, sa := range e.sortedSAs() {
		if sa.conn == nil {
			continue
		}
		closed := ClosedIKESA{Name: sa.name(), SPIs: sa.spis(), Remote: sa.remote.String(), State: sa.state.String()}
		switch sa.state {
		case ikeDead, ikeDeleting, ikeRekeyed, ikeRedundant:
			continue
		case ikeHalfOpen:
			cands := e.candidates(sa.sock, sa.local, sa.remote)
			if len(cands) == 0 {
				closed.Name, closed.Reason = "(half-open)", "no connection accepts this peer any more"
				res.Closed = append(res.Closed, closed)
				sa.destroy("reload: " + closed.Reason)
				continue
			}
			made(&sa.hs).cands = cands
			e.setConn(sa, cands[0])
			continue
		}
		nc := cfg.Connection(sa.conn.Name)
		if nc == nil {
			closed.Reason = "connection removed from the configuration"
			res.Closed = append(res.Closed, closed)
			continue // apply deletes it
		}
		if sa.pendingOf != nil {
			continue // follows the SA it may replace
		}
		why := authChanged(sa.conn, nc, sa.rec.peerID)
		if why == "" {
			continue
		}
		closed.Reason = why
		res.Closed = append(res.Closed, closed)
		sa.logger().Warn("reload: closing the IKE SA: its authentication settings changed", "reason", why)
		sa.startDelete("reload: " + why)
		restart[nc.Name] = true
	}
	for _, c := range cfg.Connections {
		if !restart[c.Name] {
			continue
		}
		for _, ch := range c.Children {
			if ch.StartAction == config.StartStart {
				e.initiate(c, ch, nil, nil)
			}
		}
	}
}
