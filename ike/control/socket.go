package control

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Errors of Listen, for errors.Is.
var (
	ErrInUse     = errors.New("in use by a running daemon")
	ErrNotSocket = errors.New("exists and is not a socket")
)

// pathAction is what Listen does with what it finds at the socket path.
type pathAction uint8

const (
	bindPath   pathAction = iota // nothing there
	removeThen                   // a stale socket: nobody listens
	refuse                       // anything else
)

// decidePath is Listen's decision, given the path's mode (from Lstat, so
// a symbolic link is not followed), whether it exists, and the result of
// connecting to it when it is a socket. Only a socket that refuses the
// connection is stale; EAGAIN (a full backlog), EACCES and the rest mean
// somebody's socket, or a doubt, and keyplane does not delete on a doubt.
func decidePath(exists bool, mode fs.FileMode, dialErr error) (pathAction, error) {
	switch {
	case !exists:
		return bindPath, nil
	case mode.Type() != fs.ModeSocket:
		return refuse, ErrNotSocket
	case dialErr == nil:
		return refuse, ErrInUse
	case errors.Is(dialErr, syscall.ECONNREFUSED):
		return removeThen, nil
	}
	return refuse, dialErr
}

// listenUnix binds the control socket at path: the missing directories
// are created 0700, an existing path is replaced only when it is a stale
// socket, and the socket is created with umask 0177, so it is 0600 from
// the start.
func listenUnix(path string) (net.Listener, error) {
	wrap := func(err error, detail string) error {
		if detail != "" {
			return fmt.Errorf("control socket %s: %w (%s)", path, err, detail)
		}
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, wrap(err, "")
	}
	fi, err := os.Lstat(path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, wrap(err, "")
	}
	var mode fs.FileMode
	var dialErr error
	if exists {
		mode = fi.Mode()
		if mode.Type() == fs.ModeSocket {
			var c net.Conn
			if c, dialErr = net.DialTimeout("unix", path, time.Second); dialErr == nil {
				c.Close()
			}
		}
	}
	act, err := decidePath(exists, mode, dialErr)
	switch act {
	case refuse:
		detail := ""
		if errors.Is(err, ErrNotSocket) {
			detail = fmt.Sprintf("a %s; keyplane removes only a stale socket: choose another control path", describe(mode))
		}
		return nil, wrap(err, detail)
	case removeThen:
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, wrap(err, "removing the stale socket")
		}
	}
	old := umask(0o177)
	ln, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		return nil, wrap(err, "")
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, wrap(err, "")
	}
	return ln, nil
}

func describe(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "regular file"
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "file of type " + m.Type().String()
}
