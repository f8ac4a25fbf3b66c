package message

import (
	"errors"
	"fmt"
)

// Sentinel errors. A decoding failure is a *ParseError wrapping one of them;
// test with errors.Is.
var (
	// ErrTruncated: a length field points past the end of its container, or
	// the data ends before a fixed-size field. Answer: INVALID_SYNTAX.
	ErrTruncated = errors.New("truncated")
	// ErrInvalidSyntax: a field holds a value RFC 7296 forbids (a length too
	// small, counts that disagree, bytes left over). Answer: INVALID_SYNTAX.
	ErrInvalidSyntax = errors.New("invalid syntax")
	// ErrUnsupportedCritical: a payload of an unknown type had the Critical
	// bit set (RFC 7296 §2.5). ParseError.Payload is that type. Answer:
	// UNSUPPORTED_CRITICAL_PAYLOAD with the type as the one-octet data.
	ErrUnsupportedCritical = errors.New("unsupported critical payload")
	// ErrInvalidMajorVersion: the header's major version is above 2.
	// Answer: INVALID_MAJOR_VERSION (RFC 7296 §2.5).
	ErrInvalidMajorVersion = errors.New("invalid major version")
	// ErrObsoleteVersion: the header's major version is below 2 (IKEv1).
	// Not an IKEv2 message; drop it.
	ErrObsoleteVersion = errors.New("obsolete major version")
	// ErrIntegrity: the Encrypted payload failed its integrity check or
	// could not be decrypted. RFC 7296 §2.21.2: drop the message silently.
	ErrIntegrity = errors.New("integrity check failed")
)

// ParseError is a decoding failure.
type ParseError struct {
	// Offset is the byte offset of the offending field: from the start of
	// the message, or, for a failure in decrypted payloads, from the start of
	// the decrypted plaintext (InSK is then true).
	Offset int
	// Payload is the payload being decoded (PayloadNone for the header).
	Payload PayloadType
	// InSK is true when the failure was inside a decrypted SK or SKF payload.
	InSK bool
	// Reason says what was wrong, for people.
	Reason string
	// Err is one of the sentinel errors of this package.
	Err error
}

func (e *ParseError) Error() string {
	where := "header"
	if e.Payload != PayloadNone {
		where = e.Payload.String() + " payload"
	}
	sk := ""
	if e.InSK {
		sk = " (inside SK)"
	}
	return fmt.Sprintf("ikev2 message: %v at offset %d in %s%s: %s", e.Err, e.Offset, where, sk, e.Reason)
}

func (e *ParseError) Unwrap() error { return e.Err }

// Notify returns the error notification RFC 7296 names for this failure, and
// the notification data to send with it: INVALID_SYNTAX for ErrTruncated and
// ErrInvalidSyntax, UNSUPPORTED_CRITICAL_PAYLOAD with the payload type for
// ErrUnsupportedCritical, INVALID_MAJOR_VERSION for ErrInvalidMajorVersion.
// It returns 0 when the message is to be dropped without answer
// (ErrObsoleteVersion, ErrIntegrity). Whether an answer is sent at all is the
// engine's decision: RFC 7296 §2.21 allows error answers only in limited
// cases (INVALID_SYNTAX only for authenticated messages, for example).
func (e *ParseError) Notify() (NotifyType, []byte) {
	switch {
	case errors.Is(e.Err, ErrUnsupportedCritical):
		return UNSUPPORTED_CRITICAL_PAYLOAD, []byte{byte(e.Payload)}
	case errors.Is(e.Err, ErrInvalidMajorVersion):
		return INVALID_MAJOR_VERSION, nil
	case errors.Is(e.Err, ErrTruncated), errors.Is(e.Err, ErrInvalidSyntax):
		return INVALID_SYNTAX, nil
	}
	return 0, nil
}

func perr(off int, p PayloadType, err error, format string, args ...any) *ParseError {
	return &ParseError{Offset: off, Payload: p, Err: err, Reason: fmt.Sprintf(format, args...)}
}

// EncodeError reports a message or payload that cannot be encoded.
type EncodeError struct {
	Payload PayloadType
	Reason  string
}

func (e *EncodeError) Error() string {
	return fmt.Sprintf("ikev2 message: cannot encode %v: %s", e.Payload, e.Reason)
}

func eerr(p PayloadType, format string, args ...any) *EncodeError {
	return &EncodeError{Payload: p, Reason: fmt.Sprintf(format, args...)}
}
