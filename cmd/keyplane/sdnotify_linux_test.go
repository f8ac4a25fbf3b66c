package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The daemon in a process of its own under a NOTIFY_SOCKET, as systemd
// runs a Type=notify-reload service: READY once it serves, RELOADING
// and READY around SIGHUP and 'keyplane reload', WATCHDOG while it runs,
// STOPPING at SIGTERM.
func TestSystemdNotify(t *testing.T) {
	dir := t.TempDir()
	nsock := filepath.Join(dir, "notify.sock")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: nsock, Net: "unixgram"})
	require.NoError(t, err)
	defer ln.Close()
	msgs := make(chan string, 64)
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := ln.Read(b)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(b[:n])
		}
	}()
	ctl := filepath.Join(dir, "kp.sock")
	conf := filepath.Join(dir, "kp.conf")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf("daemon {\n\tcontrol = %s\n}\n", ctl)), 0o644))
	cmd := exec.Command(os.Args[0], "daemon", "-c", conf)
	cmd.Env = append(os.Environ(), envAsKeyplane+"=1", "NOTIFY_SOCKET="+nsock, "WATCHDOG_USEC=200000")
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	var exitErr error
	go func() { exitErr = cmd.Wait(); close(exited) }()
	defer func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	}()

	// next returns the next state message, skipping watchdog pings (and
	// counting them).
	pings := 0
	next := func(what string) string {
		t.Helper()
		for {
			select {
			case m := <-msgs:
				if m == "WATCHDOG=1" {
					pings++
					continue
				}
				return m
			case <-time.After(15 * time.Second):
				t.Fatalf("no %s notification; log:\n%s", what, stderr)
				return ""
			}
		}
	}
	m := next("READY")
	assert.True(t, strings.HasPrefix(m, "READY=1\nSTATUS=serving on "+ctl), m)
	// The control socket serves by then.
	code, _, errs := runCLI(t, "ike", "list", "-s", ctl)
	require.Equal(t, 0, code, errs)

	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	m = next("RELOADING")
	assert.Regexp(t, `^RELOADING=1\nMONOTONIC_USEC=\d+$`, m)
	assert.Equal(t, "READY=1", next("READY after the reload"))

	code, _, errs = runCLI(t, "reload", "-s", ctl)
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `^RELOADING=1\n`, next("RELOADING"))
	assert.Equal(t, "READY=1", next("READY after the reload"))

	// A refused reload is bracketed the same way (systemd waits for READY).
	require.NoError(t, os.WriteFile(conf, []byte("daemon {\n\tretransmit_timeout = 0\n}\n"), 0o644))
	code, _, _ = runCLI(t, "reload", "-s", ctl)
	require.Equal(t, 1, code)
	assert.Regexp(t, `^RELOADING=1\n`, next("RELOADING"))
	assert.Equal(t, "READY=1", next("READY after the refused reload"))

	time.Sleep(300 * time.Millisecond) // a few watchdog intervals
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, "STOPPING=1", next("STOPPING"))
	select {
	case <-exited:
		assert.NoError(t, exitErr, "log:\n%s", stderr)
	case <-time.After(15 * time.Second):
		t.Fatal("the daemon did not exit on SIGTERM")
	}
	assert.Greater(t, pings, 0, "WATCHDOG=1 pings with WATCHDOG_USEC set")
}
