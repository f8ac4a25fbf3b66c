// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)): datagrams of newline-separated VAR=value assignments
// sent to the unix datagram socket named by $NOTIFY_SOCKET. A service
// of Type=notify (or notify-reload) says READY=1 when it serves,
// RELOADING=1 and READY=1 around a reload, STOPPING=1 when it shuts down,
// and WATCHDOG=1 at half the interval in $WATCHDOG_USEC.
//
// Outside systemd (no NOTIFY_SOCKET) every call is a no-op.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// The states keyplane sends.
const (
	Ready     = "READY=1"
	Reloading = "RELOADING=1"
	Stopping  = "STOPPING=1"
	Watchdog  = "WATCHDOG=1"
)

// Notifier sends to one notification socket.
type Notifier struct {
	addr *net.UnixAddr // nil: no socket, Notify does nothing
	// Now gives MONOTONIC_USEC for RELOADING; nil: CLOCK_MONOTONIC.
	Now func() time.Duration
}

// FromEnv returns the Notifier of $NOTIFY_SOCKET (nil-safe: with no
// socket every call does nothing). A path starting with @ is a Linux
// abstract socket.
func FromEnv() *Notifier {
	return New(os.Getenv("NOTIFY_SOCKET"))
}

// New returns a Notifier for the socket at path ("" for none).
func New(path string) *Notifier {
	if path == "" {
		return &Notifier{}
	}
	name := path
	if strings.HasPrefix(path, "@") {
		name = "\x00" + path[1:]
	}
	return &Notifier{addr: &net.UnixAddr{Name: name, Net: "unixgram"}}
}

// Enabled reports whether there is a socket to notify.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Notify sends the assignments in one datagram. RELOADING=1 gets the
// MONOTONIC_USEC that Type=notify-reload services must send with it.
func (n *Notifier) Notify(states ...string) error {
	if !n.Enabled() || len(states) == 0 {
		return nil
	}
	msg := strings.Join(states, "\n")
	for _, s := range states {
		if s == Reloading {
			msg += "\nMONOTONIC_USEC=" + strconv.FormatInt(int64(n.now()/time.Microsecond), 10)
		}
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

func (n *Notifier) now() time.Duration {
	if n.Now != nil {
		return n.Now()
	}
	return monotonic()
}

// ErrNoWatchdog is WatchdogInterval's answer when systemd asks for no
// watchdog pings (or asks another process).
var ErrNoWatchdog = errors.New("no watchdog requested")

// WatchdogInterval returns how often to send WATCHDOG=1: half of
// $WATCHDOG_USEC, when it is set and $WATCHDOG_PID is unset or this
// process.
func WatchdogInterval() (time.Duration, error) {
	return watchdogInterval(os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID"), os.Getpid())
}

func watchdogInterval(usec, pid string, self int) (time.Duration, error) {
	if usec == "" {
		return 0, ErrNoWatchdog
	}
	if pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil {
			return 0, fmt.Errorf("WATCHDOG_PID %q: %w", pid, err)
		}
		if p != self {
			return 0, ErrNoWatchdog
		}
	}
	u, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || u == 0 {
		return 0, fmt.Errorf("WATCHDOG_USEC %q: want a positive number of microseconds", usec)
	}
	return time.Duration(u) * time.Microsecond / 2, nil
}
