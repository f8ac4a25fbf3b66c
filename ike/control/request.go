package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"unicode/utf8"
)

// Errors of DecodeRequest, for errors.Is. Their text never repeats more
// than a few bytes of what the client sent.
var (
	ErrBadRequest      = errors.New("bad request")
	ErrRequestTooLarge = errors.New("request too large")
	ErrRequestTimeout  = errors.New("request not received in time")
)

// Bounds of a request's fields.
const (
	maxCmdLen   = 64
	maxNameLen  = 256
	maxArgs     = 32
	maxArgKey   = 64
	maxArgValue = 1024
	maxErrText  = 200 // of a decoder's message quoted in a reply
)

// DecodeRequest reads one request from r, reading at most max bytes, and
// validates it (see Request.Validate).
func DecodeRequest(r io.Reader, max int) (Request, error) {
	lr := &io.LimitedReader{R: r, N: int64(max) + 1}
	var req Request
	err := json.NewDecoder(lr).Decode(&req)
	switch {
	case err == nil:
	case lr.N <= 0:
		return Request{}, fmt.Errorf("%w: more than %d bytes", ErrRequestTooLarge, max)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return Request{}, fmt.Errorf("%w: no complete request before the deadline", ErrRequestTimeout)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return Request{}, fmt.Errorf("%w: the request ends before its JSON object does", ErrBadRequest)
	default:
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return Request{}, fmt.Errorf("%w: invalid JSON at byte %d", ErrBadRequest, se.Offset)
		}
		return Request{}, fmt.Errorf("%w: %s", ErrBadRequest, clip(err.Error(), maxErrText))
	}
	if err := req.Validate(); err != nil {
		return Request{}, err
	}
	return req, nil
}

// Validate checks a request's shape: a command of lower-case letters,
// digits and dashes, and names and arguments of bounded length without
// control characters (they end up in logs and error messages).
func (r *Request) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
	}
	if r.Cmd == "" {
		return bad("no cmd")
	}
	if len(r.Cmd) > maxCmdLen {
		return bad("cmd longer than %d bytes", maxCmdLen)
	}
	for _, c := range r.Cmd {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return bad("cmd: want lower-case letters, digits and dashes")
		}
	}
	if err := text("name", r.Name, maxNameLen); err != nil {
		return err
	}
	if len(r.Args) > maxArgs {
		return bad("more than %d args", maxArgs)
	}
	for k, v := range r.Args {
		if k == "" {
			return bad("an arg with an empty name")
		}
		if err := text("arg name", k, maxArgKey); err != nil {
			return err
		}
		if err := text("arg "+clip(k, maxArgKey), v, maxArgValue); err != nil {
			return err
		}
	}
	return nil
}

func text(what, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%w: %s longer than %d bytes", ErrBadRequest, what, max)
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w: %s contains control characters", ErrBadRequest, what)
		}
	}
	return nil
}

// clip shortens s to at most n bytes (on a rune boundary), marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
