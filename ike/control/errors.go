package control

import (
	"context"
	"errors"

	"github.com/keyplane/keyplane/ike"
)

// The codes of Response.Code, for programs that act on a failure's kind
// rather than its text.
const (
	CodeBadRequest = "bad_request" // the request itself is wrong (ErrBadRequest, too large, too slow)
	CodeNotFound   = "not_found"   // no connection or child of that name (ike.ErrNotFound)
	CodeTimeout    = "timeout"     // initiate's wait ended first (ErrInitiateTimeout)
	CodeRefused    = "refused"     // the daemon refused the command (a reload it cannot apply, ErrRefused)
	CodeFailed     = "failed"      // anything else
)

// CodeCursorExpired: a listing since a cursor the daemon can no longer
// answer for (ike.ErrCursorExpired): list again with since=0.
const CodeCursorExpired = "cursor_expired"

// ErrRefused marks a command the daemon will not carry out as asked, such
// as a reload with changes that need a restart; nothing was changed.
var ErrRefused = errors.New("refused")

// ErrorCode classifies err for Response.Code.
func ErrorCode(err error) string {
	switch {
	case errors.Is(err, ErrBadRequest), errors.Is(err, ErrRequestTooLarge), errors.Is(err, ErrRequestTimeout):
		return CodeBadRequest
	case errors.Is(err, ike.ErrNotFound):
		return CodeNotFound
	case errors.Is(err, ErrInitiateTimeout), errors.Is(err, context.DeadlineExceeded):
		return CodeTimeout
	case errors.Is(err, ErrRefused):
		return CodeRefused
	case errors.Is(err, ike.ErrCursorExpired):
		return CodeCursorExpired
	}
	return CodeFailed
}

// DaemonError is a command the daemon answered with a failure: its
// message and code.
type DaemonError struct {
	Code string
	Msg  string
}

func (e *DaemonError) Error() string { return e.Msg }

// Is makes errors.Is(err, ErrInitiateTimeout) and friends hold on the
// client side too.
func (e *DaemonError) Is(target error) bool {
	switch e.Code {
	case CodeTimeout:
		return target == ErrInitiateTimeout
	case CodeNotFound:
		return target == ike.ErrNotFound
	case CodeRefused:
		return target == ErrRefused
	case CodeBadRequest:
		return target == ErrBadRequest
	case CodeCursorExpired:
		return target == ike.ErrCursorExpired
	}
	return false
}

// ErrUnreachable is a control socket nobody answers on: no daemon, a
// wrong path, no permission.
var ErrUnreachable = errors.New("daemon not reachable")

// unreachable is ErrUnreachable with the path and the cause.
type unreachable struct {
	msg string
	err error
}

func (e *unreachable) Error() string { return e.msg }
func (e *unreachable) Unwrap() []error {
	return []error{ErrUnreachable, e.err}
}
