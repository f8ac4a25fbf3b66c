package ike

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrCursorExpired: a listing of changes since a cursor the engine can no
// longer answer for (older than its journal of deletions, or from another
// run of the engine): list everything again with the zero cursor.
var ErrCursorExpired = errors.New("cursor expired")

// errBadCursor is the text of a cursor that does not parse.
var errBadCursor = errors.New("malformed cursor")

// CursorError is a cursor Engine.Changes cannot answer for; it wraps
// ErrCursorExpired.
type CursorError struct {
	Cursor Cursor
	Why    string
}

func (e *CursorError) Error() string {
	return fmt.Sprintf("cursor %s: %s: %v, list everything again (cursor 0)", e.Cursor, e.Why, ErrCursorExpired)
}

func (e *CursorError) Unwrap() error { return ErrCursorExpired }

// Cursor is a point in an engine's changes, returned by each listing of
// changes for the next. The zero Cursor lists everything. Its text is
// the engine run's random epoch in hex, a dot, and the generation: a
// cursor of another run (a restarted daemon, the other node of an HA
// pair) is refused, never read as a point of this one.
type Cursor struct {
	epoch uint32
	gen   uint64
}

// IsZero says whether c is the zero cursor (everything).
func (c Cursor) IsZero() bool { return c == Cursor{} }

func (c Cursor) String() string {
	if c.IsZero() {
		return "0"
	}
	return fmt.Sprintf("%08x.%d", c.epoch, c.gen)
}

// MarshalText writes String.
func (c Cursor) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (c *Cursor) UnmarshalText(b []byte) error {
	v, err := ParseCursor(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// ParseCursor reads a cursor's text: "0" (everything), or the epoch (1 to
// 8 hex digits), a dot and the generation (decimal).
func ParseCursor(s string) (Cursor, error) {
	if s == "0" {
		return Cursor{}, nil
	}
	ep, gen, ok := strings.Cut(s, ".")
	if !ok || len(ep) == 0 || len(ep) > 8 || len(gen) == 0 || len(gen) > 20 {
		return Cursor{}, fmt.Errorf("%w %s: want 0 or EPOCH.GENERATION as a listing returned it", errBadCursor, quoteShort(s))
	}
	e, err1 := strconv.ParseUint(ep, 16, 32)
	g, err2 := strconv.ParseUint(gen, 10, 64)
	if err1 != nil || err2 != nil || e == 0 {
		return Cursor{}, fmt.Errorf("%w %s: want 0 or EPOCH.GENERATION as a listing returned it", errBadCursor, quoteShort(s))
	}
	return Cursor{epoch: uint32(e), gen: g}, nil
}

// IsBadCursor says whether err is ParseCursor's refusal of a text.
func IsBadCursor(err error) bool { return errors.Is(err, errBadCursor) }

// quoteShort quotes a bad text, cut short: the error stays short
// whatever was sent (escapes make a control character four bytes).
func quoteShort(s string) string {
	q := strconv.Quote(s)
	if len(q) > 60 {
		return q[:60] + "…"
	}
	return q
}
