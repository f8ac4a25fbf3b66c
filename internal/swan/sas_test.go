package swan

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strongswan/govici/vici"
)

func TestListSAsParse(t *testing.T) {
	var second wire
	second.sec("other", func(w *wire) {
		w.kv("state", "CONNECTING").kv("initiator", "yes").kv("initiator-spi", "1111111111111111").kv("responder-spi", "0000000000000000")
	})
	f := newFakeVici(t, listSABody(), second.Bytes())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sas, err := f.charon().ListSAs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(sas) != 2 {
		t.Fatalf("%d SAs, want 2: %v", len(sas), sas)
	}
	sa := sas[0]
	// A responder: local is the responder SPI.
	if sa.Name != "kp" || sa.State != "ESTABLISHED" || sa.Initiator || sa.LocalSPI != "d23d8cf07ff0bd0f" || sa.RemoteSPI != "770ffa9b06ebe371" {
		t.Errorf("IKE SA %+v", sa)
	}
	if sa.Local != "10.77.4.2" || sa.LocalPort != 4500 || sa.RemoteID != "a.keyplane.test" || !sa.NATFake || sa.NATLocal || sa.EncrKeySize != 128 || sa.DHGroup != "CURVE_25519" || sa.UniqueID != 3 {
		t.Errorf("IKE SA fields %+v", sa)
	}
	if len(sa.Children) != 2 || sa.Children[0].UniqueID != 2 || sa.Children[1].UniqueID != 7 {
		t.Fatalf("children not in creation order: %+v", sa.Children)
	}
	ch, ok := sa.Child("kp")
	if !ok || ch.State != "INSTALLED" || ch.SPIIn != "5999b402" || ch.SPIOut != "6f336cf4" || !ch.Encap ||
		ch.PacketsIn != 3 || ch.BytesOut != 252 || !slices.Equal(ch.LocalTS, []string{"10.10.2.1/32"}) {
		t.Errorf("Child(kp) = %+v, %v; want the installed one", ch, ok)
	}
	if _, ok := sa.Child("nope"); ok {
		t.Error("Child found a child that does not exist")
	}
	if o := sas[1]; o.Name != "other" || !o.Initiator || o.LocalSPI != "1111111111111111" || len(o.Children) != 0 {
		t.Errorf("second SA %+v", o)
	}
	if s := sa.String(); !strings.Contains(s, "kp{7} INSTALLED") {
		t.Errorf("String() = %s", s)
	}
}

func TestListSAsRejects(t *testing.T) {
	for name, body := range map[string]func(*wire){
		"not a section": func(w *wire) { w.kv("kp", "x") },
		"no state":      func(w *wire) { w.sec("kp", func(w *wire) { w.kv("uniqueid", "1") }) },
		"bad number":    func(w *wire) { w.sec("kp", func(w *wire) { w.kv("state", "ESTABLISHED").kv("uniqueid", "x") }) },
		"child no name": func(w *wire) {
			w.sec("kp", func(w *wire) {
				w.kv("state", "ESTABLISHED").sec("child-sas", func(w *wire) { w.sec("kp-1", func(w *wire) { w.kv("state", "INSTALLED") }) })
			})
		},
		"counter overflow": func(w *wire) {
			w.sec("kp", func(w *wire) {
				w.kv("state", "ESTABLISHED").sec("child-sas", func(w *wire) {
					w.sec("kp-1", func(w *wire) { w.kv("name", "kp").kv("bytes-in", "18446744073709551616") })
				})
			})
		},
	} {
		t.Run(name, func(t *testing.T) {
			var w wire
			body(&w)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if sas, err := newFakeVici(t, w.Bytes()).charon().ListSAs(ctx); err == nil {
				t.Fatalf("accepted: %v", sas)
			}
		})
	}
}

// FuzzListSAs feeds arbitrary list-sa event bodies through a real govici
// session into the parser: no panic, no hang, and what parses is sane.
func FuzzListSAs(f *testing.F) {
	f.Add(listSABody())
	f.Add([]byte{})
	var w wire
	w.sec("x", func(w *wire) { w.kv("state", "CREATED").list("child-sas", "a") })
	f.Add(w.Bytes())
	fv := newFakeVici(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		fv.setBodies(body)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sas, err := fv.charon().ListSAs(ctx)
		if ctx.Err() != nil {
			t.Fatalf("ListSAs hung: %v", err)
		}
		if err != nil {
			return
		}
		for _, sa := range sas {
			if sa.State == "" {
				t.Fatalf("SA without state: %+v", sa)
			}
			for i, c := range sa.Children {
				if c.Name == "" || (i > 0 && sa.Children[i-1].UniqueID > c.UniqueID) {
					t.Fatalf("children: %+v", sa.Children)
				}
			}
		}
	})
}

// TestParseListSAMessage covers parseListSA on a message built by govici,
// not decoded from the wire.
func TestParseListSAMessage(t *testing.T) {
	m, err := vici.MarshalMessage(map[string]any{"kp": map[string]any{
		"state": "ESTABLISHED", "initiator": "yes", "initiator-spi": "aa", "responder-spi": "bb",
		"child-sas": map[string]any{"kp-1": map[string]any{"name": "kp", "state": "INSTALLED", "esn": "1"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	sas, err := parseListSA(m)
	if err != nil || len(sas) != 1 || sas[0].LocalSPI != "aa" || !sas[0].Children[0].ESN {
		t.Fatalf("parseListSA = %+v, %v", sas, err)
	}
}
