package swan

import (
	"fmt"
	"slices"
	"strings"

	"github.com/strongswan/govici/vici"
)

// IKESA is one IKE SA as charon lists it (vici list-sas).
type IKESA struct {
	Name, State         string // connection name; CREATED, CONNECTING, ESTABLISHED, REKEYING, REKEYED, DELETING, ...
	LocalSPI, RemoteSPI string // 16 hex digits, as charon prints them
	Local, Remote       string // IKE endpoint addresses
	Children            []ChildSA

	UniqueID              uint32
	LocalPort, RemotePort int
	LocalID, RemoteID     string
	Initiator             bool   // this charon initiated the IKE SA
	NATLocal, NATRemote   bool   // NAT detected on that side
	NATFake, NATAny       bool   // NAT faked (encap = yes); any NAT, faked or not
	EncrAlg, IntegAlg     string // e.g. AES_GCM_16, HMAC_SHA2_256_128 (empty for AEADs)
	EncrKeySize           int
	PRFAlg, DHGroup       string // e.g. PRF_HMAC_SHA2_256, CURVE_25519
	Established           int64  // seconds since establishment
}

// ChildSA is one CHILD SA of an IKE SA.
type ChildSA struct {
	Name, State, Mode, Protocol string // state INSTALLED, REKEYED, ...; mode TUNNEL/TRANSPORT; protocol ESP/AH
	SPIIn, SPIOut               string // 8 hex digits, as charon prints them
	BytesIn, BytesOut           uint64
	PacketsIn, PacketsOut       uint64
	LocalTS, RemoteTS           []string
	EncrAlg, IntegAlg, DHGroup  string

	UniqueID, ReqID uint32
	Encap           bool // UDP-encapsulated ESP
	EncrKeySize     int
	ESN             bool
}

// ikeMsg and childMsg are vici's list-sa event layout (strongSwan's vici
// README), decoded by govici's typed unmarshaling.
type ikeMsg struct {
	UniqueID     uint32              `vici:"uniqueid"`
	Version      int                 `vici:"version"`
	State        string              `vici:"state"`
	LocalHost    string              `vici:"local-host"`
	LocalPort    int                 `vici:"local-port"`
	LocalID      string              `vici:"local-id"`
	RemoteHost   string              `vici:"remote-host"`
	RemotePort   int                 `vici:"remote-port"`
	RemoteID     string              `vici:"remote-id"`
	Initiator    string              `vici:"initiator"`
	InitiatorSPI string              `vici:"initiator-spi"`
	ResponderSPI string              `vici:"responder-spi"`
	NATLocal     string              `vici:"nat-local"`
	NATRemote    string              `vici:"nat-remote"`
	NATFake      string              `vici:"nat-fake"`
	NATAny       string              `vici:"nat-any"`
	EncrAlg      string              `vici:"encr-alg"`
	EncrKeySize  int                 `vici:"encr-keysize"`
	IntegAlg     string              `vici:"integ-alg"`
	PRFAlg       string              `vici:"prf-alg"`
	DHGroup      string              `vici:"dh-group"`
	Established  int64               `vici:"established"`
	Children     map[string]childMsg `vici:"child-sas"`
}

type childMsg struct {
	Name        string   `vici:"name"`
	UniqueID    uint32   `vici:"uniqueid"`
	ReqID       uint32   `vici:"reqid"`
	State       string   `vici:"state"`
	Mode        string   `vici:"mode"`
	Protocol    string   `vici:"protocol"`
	Encap       string   `vici:"encap"`
	SPIIn       string   `vici:"spi-in"`
	SPIOut      string   `vici:"spi-out"`
	EncrAlg     string   `vici:"encr-alg"`
	EncrKeySize int      `vici:"encr-keysize"`
	IntegAlg    string   `vici:"integ-alg"`
	DHGroup     string   `vici:"dh-group"`
	ESN         string   `vici:"esn"`
	BytesIn     uint64   `vici:"bytes-in"`
	PacketsIn   uint64   `vici:"packets-in"`
	BytesOut    uint64   `vici:"bytes-out"`
	PacketsOut  uint64   `vici:"packets-out"`
	LocalTS     []string `vici:"local-ts"`
	RemoteTS    []string `vici:"remote-ts"`
}

// yes parses vici's booleans: "yes" (or "1" for esn) is true, anything
// else, absent included, false.
func yes(s string) bool { return s == "yes" || s == "1" }

// parseListSA decodes one list-sa event: one key, the IKE SA's connection
// name, holding the IKE SA's section.
func parseListSA(m *vici.Message) ([]IKESA, error) {
	var out []IKESA
	for _, name := range m.Keys() {
		sec, ok := m.Get(name).(*vici.Message)
		if !ok {
			return nil, fmt.Errorf("swan: list-sa: %q is not a section", name)
		}
		var im ikeMsg
		if err := vici.UnmarshalMessage(sec, &im); err != nil {
			return nil, fmt.Errorf("swan: list-sa %q: %w", name, err)
		}
		sa, err := im.ikeSA(name)
		if err != nil {
			return nil, err
		}
		out = append(out, sa)
	}
	return out, nil
}

func (im *ikeMsg) ikeSA(name string) (IKESA, error) {
	if im.State == "" {
		return IKESA{}, fmt.Errorf("swan: list-sa %q: no state", name)
	}
	sa := IKESA{
		Name: name, State: im.State, Local: im.LocalHost, Remote: im.RemoteHost,
		UniqueID: im.UniqueID, LocalPort: im.LocalPort, RemotePort: im.RemotePort,
		LocalID: im.LocalID, RemoteID: im.RemoteID, Initiator: yes(im.Initiator),
		NATLocal: yes(im.NATLocal), NATRemote: yes(im.NATRemote), NATFake: yes(im.NATFake), NATAny: yes(im.NATAny),
		EncrAlg: im.EncrAlg, EncrKeySize: im.EncrKeySize, IntegAlg: im.IntegAlg, PRFAlg: im.PRFAlg,
		DHGroup: im.DHGroup, Established: im.Established,
	}
	if sa.Initiator {
		sa.LocalSPI, sa.RemoteSPI = im.InitiatorSPI, im.ResponderSPI
	} else {
		sa.LocalSPI, sa.RemoteSPI = im.ResponderSPI, im.InitiatorSPI
	}
	// Children are keyed "<name>-<uniqueid>"; list them in creation order.
	for key, cm := range im.Children {
		if cm.Name == "" {
			return IKESA{}, fmt.Errorf("swan: list-sa %q: child %q has no name", name, key)
		}
		sa.Children = append(sa.Children, ChildSA{
			Name: cm.Name, State: cm.State, Mode: cm.Mode, Protocol: cm.Protocol,
			SPIIn: cm.SPIIn, SPIOut: cm.SPIOut,
			BytesIn: cm.BytesIn, BytesOut: cm.BytesOut, PacketsIn: cm.PacketsIn, PacketsOut: cm.PacketsOut,
			LocalTS: cm.LocalTS, RemoteTS: cm.RemoteTS,
			EncrAlg: cm.EncrAlg, IntegAlg: cm.IntegAlg, DHGroup: cm.DHGroup,
			UniqueID: cm.UniqueID, ReqID: cm.ReqID, Encap: yes(cm.Encap), EncrKeySize: cm.EncrKeySize, ESN: yes(cm.ESN),
		})
	}
	slices.SortFunc(sa.Children, func(a, b ChildSA) int { return int(a.UniqueID) - int(b.UniqueID) })
	return sa, nil
}

// Child returns the first child SA named name in state INSTALLED, or else
// the first named name at all.
func (sa IKESA) Child(name string) (ChildSA, bool) {
	var found *ChildSA
	for i := range sa.Children {
		c := &sa.Children[i]
		if c.Name != name {
			continue
		}
		if c.State == "INSTALLED" {
			return *c, true
		}
		if found == nil {
			found = c
		}
	}
	if found != nil {
		return *found, true
	}
	return ChildSA{}, false
}

func (sa IKESA) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s[%d] %s %s:%d <-> %s:%d spi %s/%s", sa.Name, sa.UniqueID, sa.State,
		sa.Local, sa.LocalPort, sa.Remote, sa.RemotePort, sa.LocalSPI, sa.RemoteSPI)
	for _, c := range sa.Children {
		fmt.Fprintf(&b, "; %s{%d} %s %s spi in %s out %s %v === %v", c.Name, c.UniqueID, c.State, c.Mode,
			c.SPIIn, c.SPIOut, c.LocalTS, c.RemoteTS)
	}
	return b.String()
}
