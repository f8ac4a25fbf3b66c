package main

import (
	"time"

	"github.com/keyplane/keyplane/ike"
)

// The CLI's JSON objects for the engine's status: the engine's types
// with identifiers in the CLI's one format (out.go).

type ikeView struct {
	IKEID       uint32      `json:"ike_id"`
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
	Children    []childView `json:"children"`
}

type childView struct {
	ChildID     uint32    `json:"child_id"`
	Name        string    `json:"name"`
	IKE         string    `json:"ike"`
	IKEID       uint32    `json:"ike_id"`
	State       string    `json:"state"`
	Mode        string    `json:"mode"`
	ReqID       string    `json:"reqid"`
	SPIIn       string    `json:"spi_in"`
	SPIOut      string    `json:"spi_out"`
	Suite       string    `json:"suite"`
	Encap       bool      `json:"encap"`
	Offload     string    `json:"offload"`
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
	// CountersOmitted: a listing of changes without --counters.
	CountersOmitted bool `json:"counters_omitted,omitempty"`
}

func ikeOf(sa ike.IKESAInfo) ikeView {
	v := ikeView{IKEID: sa.ID, Name: sa.Name, State: sa.State.String(), Role: sa.Role, SPIi: hexText(sa.SPIi), SPIr: hexText(sa.SPIr),
		Local: sa.Local, Remote: sa.Remote, Suite: sa.Suite, NATLocal: sa.NATLocal, NATRemote: sa.NATRemote,
		Established: sa.Established, Children: []childView{}}
	for _, c := range sa.Children {
		v.Children = append(v.Children, childOf(c))
	}
	return v
}

func childOf(c ike.ChildInfo) childView {
	return childView{ChildID: c.ID, Name: c.Name, IKE: c.IKE, IKEID: c.IKEID, State: c.State.String(), Mode: c.Mode, ReqID: reqid(c.ReqID),
		SPIIn: hexText(c.SPIIn), SPIOut: hexText(c.SPIOut), Suite: c.Suite, Encap: c.Encap, Offload: c.Offload,
		LocalTS: c.LocalTS, RemoteTS: c.RemoteTS, Local: c.Local, Remote: c.Remote,
		BytesIn: c.BytesIn, PacketsIn: c.PacketsIn, BytesOut: c.BytesOut, PacketsOut: c.PacketsOut,
		RekeyNeeded: c.RekeyNeeded, Established: c.Established, CounterErr: c.CounterErr, CountersOmitted: c.CountersOmitted}
}
