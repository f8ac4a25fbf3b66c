//go:build vpp

package vpp

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/interface"
	"go.fd.io/govpp/binapi/ip"
	"go.fd.io/govpp/binapi/ipsec"
	"go.fd.io/govpp/binapi/memclnt"
	"go.fd.io/govpp/codec"
)

// Messages lists every VPP API message the backend sends or expects, in
// the CRCs of GoVPP v0.13.0's binapi (generated from VPP 25.10). At
// connect each must be in VPP's message table under exactly that
// name_crc, or the backend refuses to run: a CRC difference means the
// message's layout differs and would be mis-encoded.
func Messages() []api.Message {
	return []api.Message{
		new(memclnt.ControlPing), new(memclnt.ControlPingReply),
		new(ipsec.IpsecSadEntryAddV2), new(ipsec.IpsecSadEntryAddV2Reply),
		new(ipsec.IpsecSadEntryDel), new(ipsec.IpsecSadEntryDelReply),
		new(ipsec.IpsecSadEntryUpdate), new(ipsec.IpsecSadEntryUpdateReply),
		new(ipsec.IpsecSaV5Dump), new(ipsec.IpsecSaV5Details),
		new(ipsec.IpsecSpdAddDel), new(ipsec.IpsecSpdAddDelReply),
		new(ipsec.IpsecInterfaceAddDelSpd), new(ipsec.IpsecInterfaceAddDelSpdReply),
		new(ipsec.IpsecSpdEntryAddDelV2), new(ipsec.IpsecSpdEntryAddDelV2Reply),
		new(ipsec.IpsecSpdDump), new(ipsec.IpsecSpdDetails),
		new(ipsec.IpsecSpdsDump), new(ipsec.IpsecSpdsDetails),
		new(interfaces.SwInterfaceDump), new(interfaces.SwInterfaceDetails),
		new(interfaces.WantInterfaceEvents), new(interfaces.WantInterfaceEventsReply),
		new(interfaces.SwInterfaceEvent),
		new(interfaces.SwInterfaceAddDelAddress), new(interfaces.SwInterfaceAddDelAddressReply),
		new(ip.IPAddressDump), new(ip.IPAddressDetails),
		new(ip.IPRouteLookup), new(ip.IPRouteLookupReply),
	}
}

// MismatchError says which messages VPP does not offer with the CRC
// keyplane was built for.
type MismatchError struct {
	Socket  string
	Missing []MessageMismatch
}

// MessageMismatch is one message keyplane needs and what VPP has instead
// (VPPCRC empty: VPP has no message of that name at all).
type MessageMismatch struct {
	Name, WantCRC, VPPCRC string
}

func (e *MismatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "VPP at %s is not API-compatible with this keyplane (built with GoVPP v0.13.0 binapi for VPP 25.10): ", e.Socket)
	for i, m := range e.Missing {
		if i > 0 {
			b.WriteString("; ")
		}
		if m.VPPCRC == "" {
			fmt.Fprintf(&b, "%s_%s missing", m.Name, m.WantCRC)
		} else {
			fmt.Fprintf(&b, "%s: want crc %s, VPP has %s", m.Name, m.WantCRC, m.VPPCRC)
		}
	}
	return b.String()
}

// checkCompat looks every needed message up in the connection's message
// table; on a miss it reads VPP's table itself to say what VPP has.
func checkCompat(lookup func(api.Message) (uint16, error), socket string, timeout time.Duration) error {
	var missing []MessageMismatch
	for _, m := range Messages() {
		if _, err := lookup(m); err != nil {
			missing = append(missing, MessageMismatch{Name: m.GetMessageName(), WantCRC: m.GetCrcString()})
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if table, err := readMessageTable(socket, timeout); err == nil {
		for i := range missing {
			missing[i].VPPCRC = table[missing[i].Name]
		}
	}
	return &MismatchError{Socket: socket, Missing: missing}
}

// readMessageTable does the sockclnt_create handshake on a short-lived
// connection of its own and returns VPP's message table as name -> CRC.
// GoVPP's socket client keeps its table private, and the error for a CRC
// mismatch should name what VPP offers.
func readMessageTable(socket string, timeout time.Duration) (map[string]string, error) {
	c, err := net.DialTimeout("unix", socket, timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	// sockclnt_create has the fixed message id 15 in every VPP.
	req, err := codec.DefaultCodec.EncodeMsg(&memclnt.SockclntCreate{Name: "keyplane-probe"}, 15)
	if err != nil {
		return nil, err
	}
	if err := writeFrame(c, req); err != nil {
		return nil, err
	}
	data, err := readFrame(c)
	if err != nil {
		return nil, err
	}
	table, index, delID, err := parseMessageTable(data)
	if err != nil {
		return nil, err
	}
	if delID != 0 {
		if del, err := codec.DefaultCodec.EncodeMsg(&memclnt.SockclntDelete{Index: index}, delID); err == nil {
			writeFrame(c, del)
		}
	}
	return table, nil
}

// parseMessageTable decodes a sockclnt_create_reply into name -> CRC, the
// client index and the id of sockclnt_delete.
func parseMessageTable(data []byte) (table map[string]string, index uint32, delID uint16, err error) {
	var reply memclnt.SockclntCreateReply
	if err := codec.DefaultCodec.DecodeMsg(data, &reply); err != nil {
		return nil, 0, 0, err
	}
	if reply.Response != 0 {
		return nil, 0, 0, fmt.Errorf("sockclnt_create refused: %d", reply.Response)
	}
	table = make(map[string]string, len(reply.MessageTable))
	for _, e := range reply.MessageTable {
		name := strings.TrimRight(e.Name, "\x00")
		i := strings.LastIndexByte(name, '_')
		if i <= 0 {
			continue
		}
		table[name[:i]] = name[i+1:]
		if name[:i] == "sockclnt_delete" {
			delID = e.Index
		}
	}
	return table, reply.Index, delID, nil
}

// The socket transport frames each message with a 16-byte header whose
// bytes 8..11 carry the big-endian payload length.
func writeFrame(w io.Writer, msg []byte) error {
	buf := make([]byte, 16+len(msg))
	binary.BigEndian.PutUint32(buf[8:12], uint32(len(msg)))
	copy(buf[16:], msg)
	_, err := w.Write(buf)
	return err
}

// maxFrame bounds what a peer can make us allocate.
const maxFrame = 64 << 20

func readFrame(r io.Reader) ([]byte, error) {
	var hdr [16]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[8:12])
	if n > maxFrame {
		return nil, fmt.Errorf("frame of %d bytes exceeds %d", n, maxFrame)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, err
	}
	return data, nil
}

// MessageCRCs lists Messages as "name_crc" strings, sorted (for docs and
// the conformance runner's report).
func MessageCRCs() []string {
	var out []string
	for _, m := range Messages() {
		out = append(out, m.GetMessageName()+"_"+m.GetCrcString())
	}
	slices.Sort(out)
	return out
}
