package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/keyplane/keyplane/ike/control"
)

func init() {
	register(&command{name: "initiate", usage: "[flags] NAME [--remote ADDR]", run: runInitiate,
		summary: "bring up a child (or a connection's first child) and wait for the outcome",
		help: `NAME is a child or a connection (then its first child). In text, one line per state change
of the IKE and CHILD SAs involved is printed as it happens, then the outcome. If the child is
already installed, that is said and nothing is negotiated.

--timeout bounds the wait (default 60s, at most 1h): when it runs out the command fails with
a plain message and exit status 1, and the daemon goes on trying (retransmissions, then
giving up); 'keyplane terminate NAME' stops it.

--remote ADDR[:PORT] initiates a connection with remote_addrs = %any to that peer (the port
defaults to the connection's remote_port); a child already up with that peer is said to be (nothing
is negotiated).

With -json: {"name": NAME, "result": "up"|"already-up"} on success.`})
}

func runInitiate(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "initiate")
	cf := addCtlFlags(e, fs)
	timeout := fs.Duration("timeout", control.DefaultInitiateTimeout, "how long to wait for the outcome")
	quiet := fs.Bool("q", false, "no progress lines")
	remote := fs.String("remote", "", "the peer's address (ADDR or ADDR:PORT), for a connection with remote_addrs = %any")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"want one NAME (a child or a connection)"}
	}
	if *timeout <= 0 || *timeout > control.MaxInitiateTimeout {
		return usageError{fmt.Sprintf("--timeout %s: want a duration from 1ms to %s", *timeout, control.MaxInitiateTimeout)}
	}
	name := fs.Arg(0)
	c := cf.client()
	// The daemon answers within the timeout; the margin covers the trip.
	ctx, cancel := context.WithTimeout(ctx, *timeout+5*time.Second)
	defer cancel()
	stop := func(bool) {}
	if !cf.json && !*quiet {
		stop = progress(ctx, e, c, name)
	}
	req := control.Request{Cmd: "initiate", Name: name, Args: map[string]string{"timeout": timeout.String()}}
	if *remote != "" {
		req.Args[control.ArgRemote] = *remote
		if _, err := control.InitiateRemote(req); err != nil {
			return usageError{"--remote: " + strings.TrimPrefix(err.Error(), control.ErrBadRequest.Error()+": ")}
		}
	}
	r, err := c.Do(ctx, req)
	stop(err == nil && (r.Initiate == nil || !r.Initiate.AlreadyUp))
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		return fmt.Errorf("%s: no answer from the daemon within %s", name, *timeout+5*time.Second)
	}
	if err != nil {
		return err
	}
	result := "up"
	if r.Initiate != nil && r.Initiate.AlreadyUp {
		result = "already-up"
	}
	if cf.json {
		return writeJSON(e.stdout, map[string]string{"name": name, "result": result})
	}
	fmt.Fprintln(e.stdout, r.Text)
	return nil
}

// progressGrace bounds how long stop(true) waits for the stream to
// deliver the child's "installed" line.
const progressGrace = 2 * time.Second

// progress prints the state changes of what initiating name involves
// (the child, or the connection, and the IKE SA carrying it) until stop
// is called. Without unique SA IDs yet, another SA of the same
// connection negotiating at the same time shows up too. The events come
// on a connection of their own, so the initiate answer may overtake
// them: stop(true), after a success, first waits (at most progressGrace)
// for the child's "installed" line, so the last lines are not lost.
func progress(ctx context.Context, e *env, c *control.Client, name string) (stop func(up bool)) {
	conn, child := resolve(ctx, c, name)
	st, err := c.Subscribe(ctx)
	if err != nil {
		return func(bool) {} // an old daemon, or too many subscribers: no progress
	}
	done := make(chan struct{})
	installed := make(chan struct{})
	var once sync.Once
	go func() {
		defer close(done)
		for {
			raw, err := st.Next()
			if err != nil {
				return
			}
			var r struct {
				Event wireEvent `json:"event"`
			}
			if json.Unmarshal(raw, &r) != nil || r.Event.Engine == nil {
				continue
			}
			x := r.Event.Engine
			if (x.Kind == "ike" && x.Name == conn) || (x.Kind == "child" && (x.Name == child || child == "" && x.Name == name)) {
				fmt.Fprintln(e.stdout, engineLine(r.Event))
				if x.Kind == "child" && x.State == "installed" {
					once.Do(func() { close(installed) })
				}
			}
		}
	}()
	return func(up bool) {
		if up {
			t := time.NewTimer(progressGrace)
			select {
			case <-installed:
			case <-done:
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
		st.Close()
		<-done
	}
}

// resolve names the connection and child that initiating name brings up,
// from the daemon's configuration.
func resolve(ctx context.Context, c *control.Client, name string) (conn, child string) {
	conn = name
	r, err := c.Do(ctx, control.Request{Cmd: "conns-list", Args: map[string]string{"active": "no"}})
	if err != nil {
		return name, ""
	}
	var conns []connView
	if json.Unmarshal(r.Data, &conns) != nil {
		return name, ""
	}
	for _, cv := range conns {
		if cv.Name == name && len(cv.Children) > 0 {
			return name, cv.Children[0].Name
		}
		for _, ch := range cv.Children {
			if ch.Name == name {
				return cv.Name, name
			}
		}
	}
	return name, ""
}

// engineLine is the one-line text of an engine event.
func engineLine(ev wireEvent) string {
	x := ev.Engine
	line := fmt.Sprintf("%s %-9s %-10s %s", ev.Time.Format(time.TimeOnly), x.Kind, x.Name, x.State)
	if x.IKEID != 0 {
		line += fmt.Sprintf(" ike-id=%d", x.IKEID)
	}
	if x.ChildID != 0 {
		line += fmt.Sprintf(" child-id=%d", x.ChildID)
	}
	if !x.SPIs.IsZero() {
		line += " [" + spisText(x.SPIs.String()) + "]"
	}
	if x.Reason != "" {
		line += " reason: " + x.Reason
	}
	if x.Detail != "" {
		line += " " + x.Detail
	}
	return strings.TrimRight(line, " ")
}
