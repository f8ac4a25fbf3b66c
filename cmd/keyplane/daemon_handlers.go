package main

import (
	"context"
	"encoding/json"
	"os"
	"time"

	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/control"
	"github.com/keyplane/keyplane/internal/buildinfo"
	"github.com/keyplane/keyplane/kernelops"
)

// The daemon's own control commands, beyond control.Server's: answered
// from its configuration, the metrics and the build.
func (d *daemon) handle(srv *control.Server, b kernelops.Backend) {
	srv.Handle("conns-list", func(ctx context.Context, req control.Request) (control.Response, error) {
		cfg := d.config()
		var active map[string]*connActivity
		if req.Args["active"] != "no" {
			sas, err := d.eng.IKESAs(ctx)
			if err != nil {
				return control.Response{}, err
			}
			active = activity(sas)
		}
		return data(connsOf(cfg, active))
	})
	d.handlePools(srv) // cmd_pools.go
	srv.Handle("stats", func(ctx context.Context, req control.Request) (control.Response, error) {
		st, err := d.metrics.Snapshot(ctx)
		if err != nil {
			return control.Response{}, err
		}
		return data(st)
	})
	srv.Handle("version", func(ctx context.Context, req control.Request) (control.Response, error) {
		return data(daemonVersion{Info: buildinfo.Read(), PID: os.Getpid(), Started: d.metrics.Started(),
			Backend: b.Name(), Config: d.file})
	})
}

// daemonVersion is what `keyplane version --daemon` shows.
type daemonVersion struct {
	buildinfo.Info
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Backend string    `json:"backend"`
	Config  string    `json:"config"`
}

func data(v any) (control.Response, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return control.Response{}, err
	}
	return control.Response{Data: b}, nil
}

// connView is a configured connection as `keyplane conns list` shows it.
type connView struct {
	Name        string   `json:"name"`
	LocalAddrs  []string `json:"local_addrs"`
	RemoteAddrs []string `json:"remote_addrs"`
	LocalPort   uint16   `json:"local_port"`
	RemotePort  uint16   `json:"remote_port"`
	LocalID     string   `json:"local_id"`
	RemoteID    string   `json:"remote_id"`
	Auth        string   `json:"auth"`
	PSK         string   `json:"psk"` // where the key comes from, never the key
	Proposals   []string `json:"proposals"`
	RekeyTime   string   `json:"rekey_time"`
	DPDDelay    string   `json:"dpd_delay"`
	LogLevel    string   `json:"log_level,omitempty"`
	// IKESAs counts this connection's IKE SAs by state; Up is the
	// established ones. Absent when not asked for.
	IKESAs   map[string]int  `json:"ike_sas,omitempty"`
	Up       *int            `json:"up,omitempty"`
	Children []connChildView `json:"children"`
}

type connChildView struct {
	Name         string   `json:"name"`
	Mode         string   `json:"mode"`
	StartAction  string   `json:"start_action"`
	LocalTS      []string `json:"local_ts"`
	RemoteTS     []string `json:"remote_ts"`
	ESPProposals []string `json:"esp_proposals"`
	RekeyTime    string   `json:"rekey_time"`
	LifeTime     string   `json:"life_time"`
	ReqID        string   `json:"reqid"` // configured, or "assigned"
	Installed    *int     `json:"installed,omitempty"`
}

// connActivity is what the engine has up for one connection.
type connActivity struct {
	ikeSAs    map[string]int
	installed map[string]int // by child name
}

func activity(sas []ike.IKESAInfo) map[string]*connActivity {
	out := map[string]*connActivity{}
	for _, sa := range sas {
		a := out[sa.Name]
		if a == nil {
			a = &connActivity{ikeSAs: map[string]int{}, installed: map[string]int{}}
			out[sa.Name] = a
		}
		a.ikeSAs[sa.State.String()]++
		for _, ch := range sa.Children {
			if ch.State == "installed" {
				a.installed[ch.Name]++
			}
		}
	}
	return out
}

func connsOf(cfg *config.Config, active map[string]*connActivity) []connView {
	out := []connView{}
	addrs := func(as []string) []string {
		if len(as) == 0 {
			return []string{"%any"}
		}
		return as
	}
	for _, c := range cfg.Connections {
		v := connView{Name: c.Name, LocalAddrs: addrs(strs(c.LocalAddrs)), RemoteAddrs: addrs(strs(c.RemoteAddrs)),
			LocalPort: c.LocalPort, RemotePort: c.RemotePort, LocalID: c.LocalID.String(), RemoteID: c.RemoteID.String(),
			Auth: "psk", PSK: c.PSKSource, Proposals: strs(c.Proposals), RekeyTime: c.RekeyTime.String(),
			DPDDelay: c.DPDDelay.String(), Children: []connChildView{}}
		if c.LogLevel != nil {
			v.LogLevel = c.LogLevel.String()
		}
		var a *connActivity
		if active != nil {
			a = active[c.Name]
			if a == nil {
				a = &connActivity{ikeSAs: map[string]int{}, installed: map[string]int{}}
			}
			up := a.ikeSAs["established"]
			v.IKESAs, v.Up = a.ikeSAs, &up
		}
		for _, ch := range c.Children {
			cv := connChildView{Name: ch.Name, Mode: ch.Mode.String(), StartAction: ch.StartAction.String(),
				LocalTS: strs(ch.LocalTS), RemoteTS: strs(ch.RemoteTS), ESPProposals: strs(ch.ESPProposals),
				RekeyTime: ch.Lifetime.Soft.AddTime.String(), LifeTime: ch.Lifetime.Hard.AddTime.String(), ReqID: "assigned"}
			if ch.ReqID != 0 {
				cv.ReqID = reqid(ch.ReqID)
			}
			if a != nil {
				n := a.installed[ch.Name]
				cv.Installed = &n
			}
			v.Children = append(v.Children, cv)
		}
		out = append(out, v)
	}
	return out
}

func strs[T interface{ String() string }](xs []T) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = x.String()
	}
	return out
}
