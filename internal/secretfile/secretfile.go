// Package secretfile reads a secret — a pre-shared key today, a private
// key later — from a file, refusing what an operator did not mean to be a
// secret file:
//
//   - anything but a regular file (a device such as /dev/urandom, a FIFO,
//     a directory), found without reading or blocking on it;
//   - a file larger than a cap (MaxSize), read no further than the cap;
//   - a file that group or others may read, write or execute (mode &
//     0o077), as ssh refuses an unprotected private key.
//
// Symbolic links are followed; the checks apply to the file reached. Every
// refusal is an *Error naming the path and wrapping a sentinel
// (ErrNotRegular, ErrTooLarge, ErrPermissive) or the operating system's
// error (fs.ErrNotExist, fs.ErrPermission).
package secretfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// DefaultMaxSize caps a secret file: far above any pre-shared key or PEM
// private key, far below what could hurt the daemon.
const DefaultMaxSize = 64 << 10

// Sentinels for errors.Is.
var (
	ErrNotRegular = errors.New("not a regular file")
	ErrTooLarge   = errors.New("too large")
	ErrPermissive = errors.New("accessible by group or others")
)

// Error is a refused secret file.
type Error struct {
	Path   string
	Err    error  // a sentinel above, or the system's error
	Detail string // e.g. "mode 0644; chmod 600 it"
}

func (e *Error) Error() string {
	s := e.Path + ": " + e.Err.Error()
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Options tune Read. The zero value is the default.
type Options struct {
	// MaxSize is the largest file accepted, in bytes; 0: DefaultMaxSize.
	MaxSize int64
}

// Read returns the contents of the secret file at path. The caller owns
// the slice and should clear it when the secret is no longer needed.
func Read(path string, o Options) ([]byte, error) {
	max := o.MaxSize
	if max <= 0 {
		max = DefaultMaxSize
	}
	fail := func(err error, detail string) ([]byte, error) {
		return nil, &Error{Path: path, Err: err, Detail: detail}
	}
	// Non-blocking, so that opening a FIFO does not wait for a writer;
	// reads of a regular file ignore the flag.
	f, err := os.OpenFile(path, os.O_RDONLY|openFlags, 0)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fail(err, "")
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fail(err, "")
	}
	if problem := Check(fi.Mode(), fi.Size(), max); problem != nil {
		return fail(problem, detail(problem, fi, max))
	}
	// The file may grow between Stat and the read: never read past max.
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		clear(data)
		return fail(err, "")
	}
	if int64(len(data)) > max {
		clear(data)
		return fail(ErrTooLarge, fmt.Sprintf("more than %d bytes", max))
	}
	return data, nil
}

// Check is Read's decision on a file's mode and size: nil, or the
// sentinel that refuses it.
func Check(mode fs.FileMode, size, max int64) error {
	switch {
	case !mode.IsRegular():
		return ErrNotRegular
	case mode.Perm()&0o077 != 0:
		return ErrPermissive
	case size > max:
		return ErrTooLarge
	}
	return nil
}

func detail(problem error, fi fs.FileInfo, max int64) string {
	switch problem {
	case ErrNotRegular:
		return "a " + kind(fi.Mode()) + "; a secret must be a regular file"
	case ErrPermissive:
		return fmt.Sprintf("mode %#o; run chmod go= on it (0600 or 0400)", fi.Mode().Perm())
	case ErrTooLarge:
		return fmt.Sprintf("%d bytes, the limit is %d", fi.Size(), max)
	}
	return ""
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	}
	return "special file (" + m.Type().String() + ")"
}
