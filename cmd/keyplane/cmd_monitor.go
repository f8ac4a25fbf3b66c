package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/keyplane/keyplane/kernelops"
)

func init() {
	register(&command{name: "monitor", summary: "stream a dataplane's events until interrupted (no daemon)", run: runMonitor,
		help: processLocalHelp + "\nWith -json one JSON object per line: {\"time\", \"kind\", \"event\"}."})
}

func runMonitor(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "monitor")
	bf := addBackendFlags(fs)
	kinds := fs.String("kinds", "", "comma-separated event kinds to show (default all): "+kernelops.AllKinds.String())
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{fmt.Sprintf("no arguments, got %q", fs.Args())}
	}
	filter, err := parseKinds(*kinds)
	if err != nil {
		return usageError{err.Error()}
	}
	if processLocal[bf.name] {
		return errProcessLocal(bf.name, "'keyplane monitor'")
	}
	b, err := bf.open(ctx)
	if err != nil {
		return err
	}
	defer b.Close()
	src, err := kernelops.As[kernelops.EventSource](b)
	if err != nil {
		return err
	}
	sub, err := src.Subscribe(ctx, kernelops.SubscribeOptions{Kinds: filter})
	if err != nil {
		return err
	}
	defer sub.Close()
	return printEvents(ctx, e, sub.Events(), bf.json)
}

func parseKinds(s string) (kernelops.EventKind, error) {
	if s == "" {
		return 0, nil
	}
	var k kernelops.EventKind
	for _, name := range strings.Split(s, ",") {
		found := false
		for x := kernelops.EventKind(1); x&kernelops.AllKinds != 0; x <<= 1 {
			if x.String() == strings.TrimSpace(name) {
				k |= x
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown event kind %q (kinds: %s)", name, kernelops.AllKinds)
		}
	}
	return k, nil
}

// printEvents writes one line (or one JSON object) per event.
func printEvents(ctx context.Context, e *env, ch <-chan kernelops.Event, asJSON bool) error {
	enc := json.NewEncoder(e.stdout)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-ch:
			if !ok {
				return nil
			}
			now := time.Now()
			if asJSON {
				x, err := hexIDs(ev)
				if err != nil {
					return err
				}
				if err := enc.Encode(struct {
					Time  time.Time `json:"time"`
					Kind  string    `json:"kind"`
					Event any       `json:"event"`
				}{now, ev.Kind().String(), x}); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintf(e.stdout, "%s %-13s %s\n", now.Format(time.TimeOnly), ev.Kind(), eventText(ev))
		}
	}
}

// eventText is the one-line human form of an event.
func eventText(ev kernelops.Event) string {
	switch x := ev.(type) {
	case *kernelops.AcquireEvent:
		return fmt.Sprintf("%s %s->%s reqid %s policy %s seq %d", x.Proto, x.Src, x.Dst, reqid(x.ReqID), x.Policy, x.Seq)
	case *kernelops.ExpireEvent:
		h := "soft"
		if x.Hard {
			h = "hard"
		}
		return fmt.Sprintf("%s %s reqid %s (%s limit)", h, x.SA, reqid(x.ReqID), x.Limit)
	case *kernelops.PolicyExpireEvent:
		return fmt.Sprintf("policy %s hard=%v", x.Policy, x.Hard)
	case *kernelops.MappingEvent:
		return fmt.Sprintf("%s peer moved %s -> %s", x.SA, x.Old, x.New)
	case *kernelops.MigrateEvent:
		return fmt.Sprintf("policy %s, %d entries", x.Policy, len(x.Entries))
	case *kernelops.SyncEvent:
		return fmt.Sprintf("%s oseq %d seq %d bytes %d packets %d", x.SA, x.State.Replay.OSeq, x.State.Replay.Seq, x.State.Bytes, x.State.Packets)
	case *kernelops.AddrEvent:
		op := "removed"
		if x.Added {
			op = "added"
		}
		return fmt.Sprintf("%s %s on %s", op, x.Prefix, x.IfName)
	case *kernelops.LinkEvent:
		state := "down"
		switch {
		case x.Deleted:
			state = "deleted"
		case x.Up:
			state = "up"
		}
		return fmt.Sprintf("%s %s", x.IfName, state)
	case *kernelops.RouteEvent:
		op := "removed"
		if x.Added {
			op = "added"
		}
		via := ""
		if x.Gateway.IsValid() {
			via = " via " + x.Gateway.String()
		}
		return fmt.Sprintf("%s %s%s dev %d", op, x.Dst, via, x.IfIndex)
	case *kernelops.IdleEvent:
		return fmt.Sprintf("%s idle for %s (threshold %s)", x.SA, x.IdleFor.Round(time.Millisecond), x.Threshold)
	case *kernelops.OverrunEvent:
		return fmt.Sprintf("events lost (%d, %s): re-read the state", x.Lost, x.Source)
	}
	return fmt.Sprintf("%+v", ev)
}
