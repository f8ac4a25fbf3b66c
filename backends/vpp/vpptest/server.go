//go:build vpp

package vpptest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"

	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/memclnt"
	"go.fd.io/govpp/codec"
)

// Config describes the fake VPP a Server plays.
type Config struct {
	APISocket   string // path of the API socket to listen on
	StatsSocket string // path of the stats socket; empty: no stats segment
	Interfaces  []Interface
	Routes      []Route
	// StatSlots is the number of SA stat indexes the segment holds;
	// 0: 65536.
	StatSlots int
	// CRC, when set, advertises these messages (by name) under a
	// different CRC, as a VPP built from other API files would.
	CRC map[string]string
}

// Interface is a VPP interface of the fake. Index 0 is always local0.
type Interface struct {
	Name  string
	Up    bool
	Addrs []netip.Prefix
}

// Route is an entry of the fake's FIB (table 0). Connected prefixes of
// interface addresses are routes too.
type Route struct {
	Prefix  netip.Prefix
	IfName  string
	Gateway netip.Addr
}

// Server is a test double of VPP's binary API socket and stats segment:
// it speaks GoVPP's socket protocol (16-byte frame header, the
// sockclnt_create handshake with a message table, request/reply by
// context, dumps ended by control_ping_reply, events to registered
// clients) with GoVPP's own binapi codec, and models the parts of VPP
// 25.10's IPsec, interface and FIB behaviour the keyplane backend uses,
// with VPP's retval codes. It is NOT VPP: it does no packet processing
// beyond the SPD lookup Send performs to move counters.
type Server struct {
	cfg Config

	mu      sync.Mutex
	running bool
	ln      *net.UnixListener
	statsLn *net.UnixListener
	conns   map[*conn]struct{}
	st      *state
	seg     *statSegment
	nextCli uint32
	wg      sync.WaitGroup
	fail    map[string]*failure // injected failures by message name
	counts  map[string]int      // requests seen, by message name

	table  map[string]uint16 // name_crc -> id
	byID   map[uint16]*msgType
	byName map[string]*msgType
}

type msgType struct {
	id      uint16
	proto   api.Message
	handler func(c *conn, ctx uint32, m api.Message)
}

// New creates a server; call Start.
func New(cfg Config) *Server {
	if cfg.StatSlots == 0 {
		cfg.StatSlots = 65536
	}
	s := &Server{cfg: cfg, conns: map[*conn]struct{}{}, fail: map[string]*failure{}, counts: map[string]int{}}
	s.buildTable()
	return s
}

// Start listens on the sockets with a fresh VPP state, as VPP does when
// it starts.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return errors.New("vpptest: already running")
	}
	os.Remove(s.cfg.APISocket)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: s.cfg.APISocket, Net: "unix"})
	if err != nil {
		return err
	}
	st, err := newState(s.cfg)
	if err != nil {
		ln.Close()
		return err
	}
	s.ln, s.st = ln, st
	if s.cfg.StatsSocket != "" {
		seg, err := newStatSegment(s.cfg.StatSlots)
		if err != nil {
			ln.Close()
			return err
		}
		os.Remove(s.cfg.StatsSocket)
		sln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: s.cfg.StatsSocket, Net: "unixpacket"})
		if err != nil {
			ln.Close()
			seg.close()
			return err
		}
		s.seg, s.statsLn = seg, sln
		st.seg = seg
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			serveStats(sln, func() *statSegment {
				s.mu.Lock()
				defer s.mu.Unlock()
				return s.seg
			})
		}()
	}
	s.running = true
	s.wg.Add(1)
	go s.accept(ln)
	return nil
}

// Stop closes the sockets and every client connection and forgets all
// state, as a VPP that exits.
func (s *Server) Stop() {
	s.mu.Lock()
	if !s.running {
		s.mu.Unlock()
		return
	}
	s.running = false
	s.ln.Close()
	if s.statsLn != nil {
		s.statsLn.Close()
	}
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.mu.Lock()
	if s.seg != nil {
		s.seg.close()
		s.seg = nil
	}
	s.st = nil
	os.Remove(s.cfg.APISocket)
	if s.cfg.StatsSocket != "" {
		os.Remove(s.cfg.StatsSocket)
	}
	s.mu.Unlock()
}

// Restart is Stop then Start: VPP restarted and came back empty.
func (s *Server) Restart() error {
	s.Stop()
	return s.Start()
}

// DropConnections closes every client connection but keeps VPP's state,
// as when the API socket breaks while VPP runs on.
func (s *Server) DropConnections() {
	s.mu.Lock()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
}

// Close stops the server.
func (s *Server) Close() { s.Stop() }

type failure struct {
	n  int
	rv api.VPPApiError
}

// FailNext makes the next request named msg (e.g. "ipsec_spd_entry_add_del_v2")
// fail with retval rv, to test rollback.
func (s *Server) FailNext(msg string, rv api.VPPApiError) { s.FailNextAt(msg, 1, rv) }

// FailNextAt makes the n-th next request named msg fail with rv.
func (s *Server) FailNextAt(msg string, n int, rv api.VPPApiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[msg] = &failure{n: n, rv: rv}
}

// Requests reports how many requests of a message name the server got.
func (s *Server) Requests(msg string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[msg]
}

// Clients reports how many API clients are connected.
func (s *Server) Clients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *Server) accept(ln *net.UnixListener) {
	defer s.wg.Done()
	for {
		nc, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		s.mu.Lock()
		if !s.running {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.nextCli++
		c := &conn{s: s, nc: nc, index: s.nextCli}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// conn is one API client.
type conn struct {
	s     *Server
	nc    *net.UnixConn
	index uint32
	wmu   sync.Mutex
}

func (c *conn) serve() {
	defer c.s.wg.Done()
	defer func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		if c.s.st != nil {
			delete(c.s.st.eventClients, c)
		}
		c.s.mu.Unlock()
		c.nc.Close()
	}()
	for {
		data, err := ReadFrame(c.nc)
		if err != nil {
			return
		}
		if len(data) < 2 {
			return
		}
		id := binary.BigEndian.Uint16(data)
		t := c.s.byID[id]
		if t == nil {
			continue // VPP drops unknown message ids
		}
		m := newMsg(t.proto)
		if err := codec.DefaultCodec.DecodeMsg(data, m); err != nil {
			return
		}
		var ctx uint32
		if len(data) >= 10 && m.GetMessageType() == api.RequestMessage {
			ctx = binary.BigEndian.Uint32(data[6:10])
		} else if len(data) >= 6 {
			ctx = binary.BigEndian.Uint32(data[2:6])
		}
		if t.handler != nil {
			c.s.mu.Lock()
			c.s.counts[m.GetMessageName()]++
			c.s.mu.Unlock()
			t.handler(c, ctx, m)
		}
		if _, ok := m.(*memclnt.SockclntDelete); ok {
			return
		}
	}
}

// send encodes m with the table's id, writing ctx (a reply's context, or
// for events the client index) after the id.
func (c *conn) send(ctx uint32, m api.Message) {
	t := c.s.byName[m.GetMessageName()]
	if t == nil {
		panic(fmt.Sprintf("vpptest: message %s not in the table", m.GetMessageName()))
	}
	data, err := codec.DefaultCodec.EncodeMsg(m, t.id)
	if err != nil {
		panic(fmt.Sprintf("vpptest: encode %s: %v", m.GetMessageName(), err))
	}
	if len(data) >= 6 {
		binary.BigEndian.PutUint32(data[2:6], ctx)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	WriteFrame(c.nc, data)
}

// WriteFrame writes one message in the socket transport's framing: a
// 16-byte header whose bytes 8..11 hold the big-endian payload length.
func WriteFrame(w io.Writer, msg []byte) error {
	buf := make([]byte, 16+len(msg))
	binary.BigEndian.PutUint32(buf[8:12], uint32(len(msg)))
	copy(buf[16:], msg)
	_, err := w.Write(buf)
	return err
}

// MaxFrame bounds a frame ReadFrame accepts.
const MaxFrame = 16 << 20

// ReadFrame reads one framed message.
func ReadFrame(r io.Reader) ([]byte, error) {
	var hdr [16]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[8:12])
	if n > MaxFrame {
		return nil, fmt.Errorf("vpptest: frame of %d bytes", n)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, err
	}
	return data, nil
}
