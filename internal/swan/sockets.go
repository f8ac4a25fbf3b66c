package swan

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/keyplane/keyplane/internal/lab"
)

// waitSockets waits until charon's IKE ports are bound in its namespace.
// vici answering is not proof: a peer that talks to charon before its
// sockets are open loses its first messages, and a charon whose sockets
// failed to open would only show as a peer that never answers.
func (c *Charon) waitSockets(ctx context.Context, ns *lab.NS, ports ...int) error {
	var missing []int
	for {
		bound, err := boundUDPPorts(ns)
		if err != nil {
			return fmt.Errorf("swan: reading the UDP sockets of charon's namespace: %w", err)
		}
		missing = missing[:0]
		for _, p := range ports {
			if !bound[p] {
				missing = append(missing, p)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("charon exited before binding UDP ports %v (%v); log:\n%s", missing, c.waitErr,
				tail(withoutChatter(c.Log()), 30))
		case <-ctx.Done():
			return fmt.Errorf("charon answers on vici but has not bound UDP ports %v; log:\n%s", missing,
				tail(withoutChatter(c.Log()), 30))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// boundUDPPorts lists the local UDP ports bound in ns (the current
// namespace when ns is nil), from /proc/net/udp and udp6 as seen there.
func boundUDPPorts(ns *lab.NS) (map[int]bool, error) {
	var data [][]byte
	read := func() error {
		for _, f := range []string{"udp", "udp6"} {
			b, err := os.ReadFile("/proc/thread-self/net/" + f)
			if err != nil && !os.IsNotExist(err) {
				return err
			}
			data = append(data, b)
		}
		return nil
	}
	var err error
	if ns != nil {
		err = ns.Do(read)
	} else {
		err = read()
	}
	if err != nil {
		return nil, err
	}
	ports := map[int]bool{}
	for _, b := range data {
		parseProcUDP(b, ports)
	}
	return ports, nil
}

// parseProcUDP adds the local ports of a /proc/net/udp{,6} table to ports:
// the second column is ADDR:PORT with the port in hex.
func parseProcUDP(b []byte, ports map[int]bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		_, hex, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		if p, err := strconv.ParseUint(hex, 16, 16); err == nil {
			ports[int(p)] = true
		}
	}
}
