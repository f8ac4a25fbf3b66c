package swan

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
)

// This file is a test double: fakeVici speaks just enough of charon's vici
// wire protocol (strongSwan's vici README: 32-bit length, packet type,
// named packets with an 8-bit name length, message elements) to answer
// govici's list-sas stream with bytes the test chooses. It exists to fuzz
// the path from the socket to IKESA; it proves nothing about charon.

// vici packet types and message element types.
const (
	pktCmdRequest      = 0
	pktCmdResponse     = 1
	pktEventRegister   = 3
	pktEventUnregister = 4
	pktEventConfirm    = 5
	pktEvent           = 7

	elSectionStart = 1
	elSectionEnd   = 2
	elKeyValue     = 3
	elListStart    = 4
	elListItem     = 5
	elListEnd      = 6
)

// wire builds a vici message body.
type wire struct{ bytes.Buffer }

func (w *wire) name(s string) { w.WriteByte(byte(len(s))); w.WriteString(s) }

func (w *wire) value(s string) {
	var l [2]byte
	binary.BigEndian.PutUint16(l[:], uint16(len(s)))
	w.Write(l[:])
	w.WriteString(s)
}

func (w *wire) kv(k, v string) *wire { w.WriteByte(elKeyValue); w.name(k); w.value(v); return w }

func (w *wire) list(k string, items ...string) *wire {
	w.WriteByte(elListStart)
	w.name(k)
	for _, it := range items {
		w.WriteByte(elListItem)
		w.value(it)
	}
	w.WriteByte(elListEnd)
	return w
}

func (w *wire) sec(k string, body func(*wire)) *wire {
	w.WriteByte(elSectionStart)
	w.name(k)
	body(w)
	w.WriteByte(elSectionEnd)
	return w
}

// fakeVici serves list-sas on a unix socket: every list-sas request gets
// the events in bodies, then an empty command response.
type fakeVici struct {
	ln net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex // the socket is no happens-before edge for the race detector
	bodies [][]byte
}

func (f *fakeVici) setBodies(b ...[]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bodies = b
}

func newFakeVici(t testing.TB, bodies ...[]byte) *fakeVici {
	t.Helper()
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "vici"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeVici{ln: ln, bodies: bodies}
	f.wg.Add(1)
	go f.serve()
	t.Cleanup(func() { ln.Close(); f.wg.Wait() })
	return f
}

// charon is a Charon whose vici socket is the fake's.
func (f *fakeVici) charon() *Charon {
	return &Charon{socket: f.ln.Addr().String(), done: make(chan struct{}), cfg: &config{childOf: map[string]string{}}}
}

func (f *fakeVici) serve() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer c.Close()
			f.conn(c)
		}()
	}
}

func writePacket(c net.Conn, typ byte, name string, body []byte) error {
	var p bytes.Buffer
	p.WriteByte(typ)
	if name != "" {
		p.WriteByte(byte(len(name)))
		p.WriteString(name)
	}
	p.Write(body)
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(p.Len()))
	_, err := c.Write(append(l[:], p.Bytes()...))
	return err
}

func (f *fakeVici) conn(c net.Conn) {
	for {
		var l [4]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		p := make([]byte, binary.BigEndian.Uint32(l[:]))
		if _, err := io.ReadFull(c, p); err != nil || len(p) < 2 || int(p[1])+2 > len(p) {
			return
		}
		typ, name := p[0], string(p[2:2+int(p[1])])
		var err error
		switch typ {
		case pktEventRegister, pktEventUnregister:
			err = writePacket(c, pktEventConfirm, "", nil)
		case pktCmdRequest:
			f.mu.Lock()
			bodies := f.bodies
			f.mu.Unlock()
			if name == "list-sas" {
				for _, b := range bodies {
					if err = writePacket(c, pktEvent, "list-sa", b); err != nil {
						return
					}
				}
			}
			err = writePacket(c, pktCmdResponse, "", nil)
		default:
			err = errors.New("unexpected packet")
		}
		if err != nil {
			return
		}
	}
}

// listSABody is a list-sa event as charon 5.9.8 sends it for a responder
// with one installed and one rekeyed child.
func listSABody() []byte {
	var w wire
	w.sec("kp", func(w *wire) {
		w.kv("uniqueid", "3").kv("version", "2").kv("state", "ESTABLISHED").
			kv("local-host", "10.77.4.2").kv("local-port", "4500").kv("local-id", "b.keyplane.test").
			kv("remote-host", "10.77.4.1").kv("remote-port", "4500").kv("remote-id", "a.keyplane.test").
			kv("initiator-spi", "770ffa9b06ebe371").kv("responder-spi", "d23d8cf07ff0bd0f").
			kv("nat-remote", "yes").kv("nat-fake", "yes").kv("nat-any", "yes").
			kv("encr-alg", "AES_GCM_16").kv("encr-keysize", "128").kv("prf-alg", "PRF_HMAC_SHA2_256").
			kv("dh-group", "CURVE_25519").kv("established", "12").kv("rekey-time", "13000").
			list("tasks-queued")
		w.sec("child-sas", func(w *wire) {
			w.sec("kp-7", func(w *wire) {
				w.kv("name", "kp").kv("uniqueid", "7").kv("reqid", "1").kv("state", "INSTALLED").
					kv("mode", "TUNNEL").kv("protocol", "ESP").kv("encap", "yes").
					kv("spi-in", "5999b402").kv("spi-out", "6f336cf4").kv("encr-alg", "AES_GCM_16").
					kv("encr-keysize", "128").kv("bytes-in", "252").kv("packets-in", "3").
					kv("bytes-out", "252").kv("packets-out", "3").
					list("local-ts", "10.10.2.1/32").list("remote-ts", "10.10.1.1/32")
			})
			w.sec("kp-2", func(w *wire) {
				w.kv("name", "kp").kv("uniqueid", "2").kv("reqid", "1").kv("state", "REKEYED").
					kv("mode", "TUNNEL").kv("protocol", "ESP").kv("spi-in", "c0000001").kv("spi-out", "c0000002").
					list("local-ts", "10.10.2.1/32").list("remote-ts", "10.10.1.1/32")
			})
		})
	})
	return w.Bytes()
}
