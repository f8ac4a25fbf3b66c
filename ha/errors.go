package ha

import (
	"errors"
	"fmt"
)

// Sentinels for errors.Is; the typed errors below wrap them.
var (
	// ErrUnseal: a record did not open (tampered, wrong key, or moved
	// to another key).
	ErrUnseal = errors.New("ha: record does not open under the cluster key")
	// ErrTooLarge: a record above the size limit, refused.
	ErrTooLarge = errors.New("ha: record too large")
	// ErrTooMany: more records than the limit, refused.
	ErrTooMany = errors.New("ha: too many records")
	// ErrNotLeader: this node does not hold the leadership (lease lost,
	// resigned, never won, or etcd cannot confirm it).
	ErrNotLeader = errors.New("ha: not the leader")
	// ErrClosed: the object was closed.
	ErrClosed = errors.New("ha: closed")
)

// SealError says which record did not open and why.
type SealError struct {
	Key    string // the record's key (its path under the prefix)
	Reason string
}

func (e *SealError) Error() string { return fmt.Sprintf("ha: record %s: %s", e.Key, e.Reason) }
func (e *SealError) Unwrap() error { return ErrUnseal }

// SizeError is a record or record set beyond a limit.
type SizeError struct {
	Key   string
	Size  int
	Limit int
	Err   error // ErrTooLarge or ErrTooMany
}

func (e *SizeError) Error() string {
	if errors.Is(e.Err, ErrTooMany) {
		return fmt.Sprintf("ha: record %s: %d records, limit %d", e.Key, e.Size, e.Limit)
	}
	return fmt.Sprintf("ha: record %s: %d bytes, limit %d", e.Key, e.Size, e.Limit)
}
func (e *SizeError) Unwrap() error { return e.Err }

// FenceError is a write refused because this node is not the leader.
type FenceError struct {
	Node   string
	Op     string // what was refused ("add SA", "put record", ...)
	Reason string
	Err    error // the cause when etcd could not confirm the lease
}

func (e *FenceError) Error() string {
	s := fmt.Sprintf("ha: node %s: %s refused: not the leader (%s)", e.Node, e.Op, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *FenceError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrNotLeader, e.Err}
	}
	return []error{ErrNotLeader}
}
