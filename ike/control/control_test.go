package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	s := &Server{Engine: e, Reload: func(ctx context.Context) (*ReloadReport, error) {
		reloads++
		if reloads > 1 {
			return nil, fmt.Errorf("%w: backend changes need a restart", ErrRefused)
		}
		return &ReloadReport{Connections: 1, Started: []string{"ch1"}}, nil
	},
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
	_, err = c.Do(ctx, Request{Cmd: "initiate", Name: "nope"})
	var de *DaemonError
	if !errors.As(err, &de) || de.Code != CodeNotFound || !errors.Is(err, ike.ErrNotFound) || !strings.Contains(err.Error(), "no such") {
		t.Errorf("initiate unknown: %v", err)
	}
	for _, bad := range []string{"soon", "-1s", "2h"} {
		_, err = c.Do(ctx, Request{Cmd: "initiate", Name: "ch1", Args: map[string]string{"timeout": bad}})
		if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "timeout") {
			t.Errorf("initiate with timeout %q: %v", bad, err)
		}
	}
	if _, err := c.Do(ctx, Request{Cmd: "frobnicate"}); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("unknown command: %v", err)
	}
	if r, err := c.Do(ctx, Request{Cmd: "echo", Name: "a", Args: map[string]string{"x": "b"}}); err != nil || r.Text != "ab" {
		t.Errorf("echo: %+v %v", r, err)
	}
	if r, err := c.Do(ctx, Request{Cmd: "reload"}); err != nil || reloads != 1 || r.Reload == nil || r.Reload.Started[0] != "ch1" {
		t.Errorf("reload: %+v %v (%d)", r, err, reloads)
	}
	if _, err := c.Do(ctx, Request{Cmd: "reload"}); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "need a restart") {
		t.Errorf("refused reload: %v", err)
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
	// A peer that never answers (remote port 9 on loopback): the wait
	// ends with a plain message and the timeout code.
	start := time.Now()
	_, err = c.Do(ctx, Request{Cmd: "initiate", Name: "ch1", Args: map[string]string{"timeout": "300ms"}})
	if !errors.Is(err, ErrInitiateTimeout) || !strings.Contains(err.Error(), "ch1: no result within 300ms; the daemon goes on trying") ||
		time.Since(start) > 5*time.Second {
		t.Errorf("initiate with a timeout: %v after %s", err, time.Since(start))
	}
}
