//go:build vpp

package vpptest

import (
	"reflect"

	"go.fd.io/govpp/api"
	interfaces "go.fd.io/govpp/binapi/interface"
	"go.fd.io/govpp/binapi/ip"
	"go.fd.io/govpp/binapi/ipsec"
	"go.fd.io/govpp/binapi/memclnt"
)

func newMsg(proto api.Message) api.Message {
	return reflect.New(reflect.TypeOf(proto).Elem()).Interface().(api.Message)
}

// sockclntCreateID is fixed: GoVPP sends sockclnt_create as message 15
// before it has a table, as every VPP numbers it.
const sockclntCreateID = 15

// buildTable numbers the messages the fake knows, as VPP numbers every
// message of its loaded API files at start-up.
func (s *Server) buildTable() {
	s.table = map[string]uint16{}
	s.byID = map[uint16]*msgType{}
	s.byName = map[string]*msgType{}
	next := uint16(1)
	add := func(proto api.Message, h func(c *conn, ctx uint32, m api.Message)) {
		id := next
		if proto.GetMessageName() == "sockclnt_create" {
			id = sockclntCreateID
		} else {
			if next == sockclntCreateID {
				next++
			}
			id = next
			next++
		}
		t := &msgType{id: id, proto: proto, handler: h}
		crc := proto.GetCrcString()
		if o, ok := s.cfg.CRC[proto.GetMessageName()]; ok {
			crc = o
		}
		s.table[proto.GetMessageName()+"_"+crc] = id
		s.byID[id] = t
		s.byName[proto.GetMessageName()] = t
	}
	// memclnt
	add(new(memclnt.SockclntCreate), (*conn).sockclntCreate)
	add(new(memclnt.SockclntCreateReply), nil)
	add(new(memclnt.SockclntDelete), (*conn).sockclntDelete)
	add(new(memclnt.SockclntDeleteReply), nil)
	add(new(memclnt.ControlPing), (*conn).controlPing)
	add(new(memclnt.ControlPingReply), nil)
	// ipsec
	add(new(ipsec.IpsecSadEntryAddV2), (*conn).sadEntryAdd)
	add(new(ipsec.IpsecSadEntryAddV2Reply), nil)
	add(new(ipsec.IpsecSadEntryDel), (*conn).sadEntryDel)
	add(new(ipsec.IpsecSadEntryDelReply), nil)
	add(new(ipsec.IpsecSadEntryUpdate), (*conn).sadEntryUpdate)
	add(new(ipsec.IpsecSadEntryUpdateReply), nil)
	add(new(ipsec.IpsecSaV5Dump), (*conn).saDump)
	add(new(ipsec.IpsecSaV5Details), nil)
	add(new(ipsec.IpsecSpdAddDel), (*conn).spdAddDel)
	add(new(ipsec.IpsecSpdAddDelReply), nil)
	add(new(ipsec.IpsecInterfaceAddDelSpd), (*conn).interfaceAddDelSpd)
	add(new(ipsec.IpsecInterfaceAddDelSpdReply), nil)
	add(new(ipsec.IpsecSpdEntryAddDelV2), (*conn).spdEntryAddDel)
	add(new(ipsec.IpsecSpdEntryAddDelV2Reply), nil)
	add(new(ipsec.IpsecSpdDump), (*conn).spdDump)
	add(new(ipsec.IpsecSpdDetails), nil)
	add(new(ipsec.IpsecSpdsDump), (*conn).spdsDump)
	add(new(ipsec.IpsecSpdsDetails), nil)
	add(new(ipsec.IpsecSpdInterfaceDump), (*conn).spdInterfaceDump)
	add(new(ipsec.IpsecSpdInterfaceDetails), nil)
	// interface
	add(new(interfaces.SwInterfaceDump), (*conn).swInterfaceDump)
	add(new(interfaces.SwInterfaceDetails), nil)
	add(new(interfaces.WantInterfaceEvents), (*conn).wantInterfaceEvents)
	add(new(interfaces.WantInterfaceEventsReply), nil)
	add(new(interfaces.SwInterfaceEvent), nil)
	add(new(interfaces.SwInterfaceAddDelAddress), (*conn).addDelAddress)
	add(new(interfaces.SwInterfaceAddDelAddressReply), nil)
	// ip
	add(new(ip.IPAddressDump), (*conn).ipAddressDump)
	add(new(ip.IPAddressDetails), nil)
	add(new(ip.IPRouteLookup), (*conn).ipRouteLookup)
	add(new(ip.IPRouteLookupReply), nil)
}
