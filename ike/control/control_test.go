package control

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/kernelops"
)

const conf = `
daemon {
	retransmit_timeout = 5s
}
connections {
	c1 {
		local_addrs = 127.0.0.1
		remote_addrs = 127.0.0.1
		local_port = 0
		remote_port = 9
		local_port_nat = 1
		psk_env = PSK
		children {
			ch1 {
				local_ts = 10.1.0.0/16
				remote_ts = 10.2.0.0/16
			}
		}
	}
}
`

func TestServer(t *testing.T) {
	src := strings.Replace(conf, "local_port = 0", "local_port = 45731", 1)
	src = strings.Replace(src, "local_port_nat = 1", "local_port_nat = 45732", 1)
	cfg, err := config.Parse("c.conf", []byte(src), config.Options{Getenv: func(string) (string, bool) { return "k", true }})
	if err != nil {
		t.Fatal(err)
	}
	b, err := nokernel.Open(t.Context(), kernelops.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	e, err := ike.New(t.Context(), ike.Options{Backend: b, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	reloads := 0
	s := &Server{Engine: e, Reload: func(ctx context.Context) (string, error) { reloads++; return "", nil },
		Describe: func(ev kernelops.Event) string { return ev.Kind().String() }}
	s.Handle("echo", func(ctx context.Context, r Request) (Response, error) {
		if r.Name == "" {
			return Response{}, errors.New("empty")
		}
		return Response{Text: r.Name + r.Args["x"]}, nil
	})
	path := filepath.Join(t.TempDir(), "kp.sock")
	if err := s.Listen(path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := (&Server{Engine: e}).Listen(path); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second server on the socket: %v", err)
	}
	c := &Client{Path: path}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if r, err := c.Do(ctx, Request{Cmd: "ike-list"}); err != nil || len(r.IKESAs) != 0 {
		t.Fatalf("ike-list: %+v %v", r, err)
	}
	if _, err := c.Do(ctx, Request{Cmd: "initiate", Name: "nope"}); err == nil || !strings.Contains(err.Error(), "no such") {
		t.Errorf("initiate unknown: %v", err)
	}
	if _, err := c.Do(ctx, Request{Cmd: "frobnicate"}); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("unknown command: %v", err)
	}
	if r, err := c.Do(ctx, Request{Cmd: "echo", Name: "a", Args: map[string]string{"x": "b"}}); err != nil || r.Text != "ab" {
		t.Errorf("echo: %+v %v", r, err)
	}
	if _, err := c.Do(ctx, Request{Cmd: "reload"}); err != nil || reloads != 1 {
		t.Errorf("reload: %v (%d)", err, reloads)
	}
	// Events: an initiation towards a peer that never answers shows up.
	got := make(chan string, 16)
	ectx, ecancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- c.Events(ectx, func(raw json.RawMessage) error {
			got <- string(raw)
			return nil
		})
	}()
	time.Sleep(100 * time.Millisecond)
	ictx, icancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_ = e.Initiate(ictx, "ch1")
	icancel()
	select {
	case ev := <-got:
		if !strings.Contains(ev, `"state":"init-sent"`) || !strings.Contains(ev, `"source":"engine"`) {
			t.Errorf("event %s", ev)
		}
	case <-ctx.Done():
		t.Fatal("no event streamed")
	}
	if r, err := c.Do(ctx, Request{Cmd: "ike-list"}); err != nil || len(r.IKESAs) != 1 || r.IKESAs[0].State != "init-sent" {
		t.Errorf("ike-list after initiate: %+v %v", r, err)
	}
	ecancel()
	if err := <-done; err != nil {
		t.Errorf("events: %v", err)
	}
}
