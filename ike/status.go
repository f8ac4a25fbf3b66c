package ike

import (
	"context"
	"fmt"
	"time"

	"github.com/keyplane/keyplane/kernelops"
)

// IKESAInfo is an IKE SA as `keyplane ike list` shows it.
type IKESAInfo struct {
	Name        string      `json:"name"`
	State       string      `json:"state"`
	Role        string      `json:"role"`
	SPIi        string      `json:"spi_i"`
	SPIr        string      `json:"spi_r"`
	Local       string      `json:"local"`
	Remote      string      `json:"remote"`
	Suite       string      `json:"suite,omitempty"`
	NATLocal    bool        `json:"nat_local"`
	NATRemote   bool        `json:"nat_remote"`
	Established time.Time   `json:"established,omitzero"`
	Children    []ChildInfo `json:"children"`
}

// ChildInfo is a child SA with the dataplane's counters.
type ChildInfo struct {
	Name        string    `json:"name"`
	IKE         string    `json:"ike"`
	State       string    `json:"state"`
	Mode        string    `json:"mode"`
	ReqID       uint32    `json:"reqid"`
	SPIIn       string    `json:"spi_in"`
	SPIOut      string    `json:"spi_out"`
	Suite       string    `json:"suite"`
	Encap       bool      `json:"encap"`
	Offload     string    `json:"offload"` // hardware offload installed: no, crypto, packet
	LocalTS     string    `json:"local_ts"`
	RemoteTS    string    `json:"remote_ts"`
	Local       string    `json:"local"`
	Remote      string    `json:"remote"`
	BytesIn     uint64    `json:"bytes_in"`
	PacketsIn   uint64    `json:"packets_in"`
	BytesOut    uint64    `json:"bytes_out"`
	PacketsOut  uint64    `json:"packets_out"`
	RekeyNeeded bool      `json:"rekey_needed"`
	Established time.Time `json:"established,omitzero"`
	CounterErr  string    `json:"counter_error,omitempty"`
}

// IKESAs lists the IKE SAs with their children; the children's counters
// are read from the dataplane.
func (e *Engine) IKESAs(ctx context.Context) ([]IKESAInfo, error) {
	var out []IKESAInfo
	err := e.call(ctx, func() {
		for _, sa := range e.sortedSAs() {
			role := "responder"
			if sa.initiator {
				role = "initiator"
			}
			info := IKESAInfo{Name: sa.name(), State: sa.state.String(), Role: role,
				SPIi: fmt.Sprintf("%016x", sa.spii), SPIr: fmt.Sprintf("%016x", sa.spir),
				Local: sa.local.String(), Remote: sa.remote.String(), NATLocal: sa.natLocal, NATRemote: sa.natRemote,
				Established: sa.estAt, Children: []ChildInfo{}}
			if sa.keys != nil {
				info.Suite = sa.suite.String()
			}
			for _, ch := range sa.children {
				info.Children = append(info.Children, e.childInfo(ctx, ch))
			}
			out = append(out, info)
		}
	})
	return out, err
}

func (e *Engine) sortedSAs() []*ikeSA {
	var out []*ikeSA
	for _, sa := range e.sas {
		out = append(out, sa)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].created.Before(out[j-1].created); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func (e *Engine) childInfo(ctx context.Context, ch *childSA) ChildInfo {
	ci := ChildInfo{Name: ch.cfg.Name, IKE: ch.ike.name(), State: ch.state.String(), Mode: ch.mode.String(), ReqID: ch.reqid,
		SPIIn: fmt.Sprintf("%08x", ch.inSPI), SPIOut: fmt.Sprintf("%08x", ch.outSPI), Suite: childSuiteText(ch.suite),
		Encap: ch.encap != nil, Offload: offloadText(ch.offIn, ch.offOut), LocalTS: rangesString(ch.localTS), RemoteTS: rangesString(ch.remoteTS),
		Local: ch.localAddr.String(), Remote: ch.remoteAddr.String(), RekeyNeeded: ch.rekey, Established: ch.estAt}
	if ch.state == childInstalled {
		if in, err := e.sad.GetSA(ctx, ch.inID()); err == nil {
			ci.BytesIn, ci.PacketsIn = in.Counters.Bytes, in.Counters.Packets
		} else {
			ci.CounterErr = err.Error()
		}
		if out, err := e.sad.GetSA(ctx, ch.outID()); err == nil {
			ci.BytesOut, ci.PacketsOut = out.Counters.Bytes, out.Counters.Packets
		} else {
			ci.CounterErr = err.Error()
		}
	}
	return ci
}

// Children lists the installed children of every IKE SA.
func (e *Engine) Children(ctx context.Context) ([]ChildInfo, error) {
	sas, err := e.IKESAs(ctx)
	if err != nil {
		return nil, err
	}
	var out []ChildInfo
	for _, sa := range sas {
		out = append(out, sa.Children...)
	}
	return out, nil
}

// Handshakes returns the measured handshake times (IKE_SA_INIT sent to
// first child installed) of the IKE SAs this engine initiated.
func (e *Engine) Handshakes(ctx context.Context) ([]time.Duration, error) {
	var out []time.Duration
	err := e.call(ctx, func() { out = append(out, e.handshakes...) })
	return out, err
}

// Backend returns the dataplane the engine drives.
func (e *Engine) Backend() kernelops.Backend { return e.b }
