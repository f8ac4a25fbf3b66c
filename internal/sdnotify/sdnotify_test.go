package sdnotify

import (
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// listen opens a datagram socket as systemd does for NOTIFY_SOCKET.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func read(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	b := make([]byte, 4096)
	n, err := c.Read(b)
	require.NoError(t, err)
	return string(b[:n])
}

func TestNotify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	c := listen(t, path)
	n := New(path)
	n.Now = func() time.Duration { return 1234567 * time.Microsecond }
	require.True(t, n.Enabled())
	require.NoError(t, n.Notify(Ready, "STATUS=serving"))
	assert.Equal(t, "READY=1\nSTATUS=serving", read(t, c))
	require.NoError(t, n.Notify(Reloading))
	assert.Equal(t, "RELOADING=1\nMONOTONIC_USEC=1234567", read(t, c))
	require.NoError(t, n.Notify(Stopping))
	assert.Equal(t, "STOPPING=1", read(t, c))
}

func TestNotifyAbstract(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("abstract unix sockets are Linux's")
	}
	name := "keyplane-sdnotify-test-" + strings.ReplaceAll(t.Name(), "/", "-")
	c := listen(t, "\x00"+name)
	require.NoError(t, New("@"+name).Notify(Watchdog))
	assert.Equal(t, "WATCHDOG=1", read(t, c))
}

func TestNoSocket(t *testing.T) {
	n := New("")
	assert.False(t, n.Enabled())
	assert.NoError(t, n.Notify(Ready))
	var nilN *Notifier
	assert.NoError(t, nilN.Notify(Ready))
	// A socket nobody listens on is an error the caller may log.
	assert.Error(t, New(filepath.Join(t.TempDir(), "gone.sock")).Notify(Ready))
}

func TestWatchdogInterval(t *testing.T) {
	for _, c := range []struct {
		usec, pid string
		want      time.Duration
		err       bool
	}{
		{"", "", 0, true},
		{"30000000", "", 15 * time.Second, false},
		{"30000000", "42", 15 * time.Second, false},
		{"30000000", "43", 0, true},
		{"0", "", 0, true},
		{"x", "", 0, true},
	} {
		d, err := watchdogInterval(c.usec, c.pid, 42)
		if c.err {
			assert.Error(t, err, "%+v", c)
			continue
		}
		assert.NoError(t, err)
		assert.Equal(t, c.want, d)
	}
	_, err := watchdogInterval("", "", 1)
	assert.ErrorIs(t, err, ErrNoWatchdog)
}
