package ikecrypto

import (
	"fmt"
	"io"
	"log/slog"
)

// Key is secret key material. It is a byte slice, but printing it with fmt
// (any verb), log/slog or encoding/json shows only its length.
type Key []byte

// String returns "Key(N bytes, redacted)".
func (k Key) String() string { return fmt.Sprintf("Key(%d bytes, redacted)", len(k)) }

// GoString redacts like String.
func (k Key) GoString() string { return k.String() }

// Format redacts for every verb, %x and %s included.
func (k Key) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// LogValue redacts for log/slog.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.String()) }

// MarshalText redacts for encoding/json and other text encoders.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Zero overwrites the key with zeros.
func (k Key) Zero() { clear(k) }
