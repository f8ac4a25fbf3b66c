package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/keyplane/keyplane/ike/control"
)

// The JSON convention (docs/cli.md):
//
//   - A command's result goes to stdout: one JSON document (an object,
//     or for lists an array, [] when empty) or, for lists with --stream
//     and for event streams, one JSON object per line.
//   - A failure under -json is one JSON object on stderr,
//     {"error": "...", "code": "...", "command": "..."}, with exit
//     status 1 (2 for a usage error); stdout then holds nothing more
//     (a list cut short by the failure is still a closed, valid array).
//   - SPIs are strings "0x" and 8 hex digits (ESP) or 16 (IKE); reqids
//     are strings "0x" and 8 hex digits; the same in text output.

// Error codes of the JSON error object, beyond the daemon's own
// (control.Code*).
const (
	codeUsage       = "usage"
	codeUnreachable = "unreachable"
)

// errorCode classifies err for the JSON error object.
func errorCode(err error) string {
	var ue usageError
	var de *control.DaemonError
	switch {
	case errors.As(err, &ue):
		return codeUsage
	case errors.Is(err, control.ErrUnreachable):
		return codeUnreachable
	case errors.As(err, &de) && de.Code != "":
		return de.Code
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, control.ErrInitiateTimeout):
		return control.CodeTimeout
	}
	return control.CodeFailed
}

// jsonErr is the JSON error object.
type jsonErr struct {
	Error   string `json:"error"`
	Code    string `json:"code"`
	Command string `json:"command"`
}

func (e *env) jsonError(err error) {
	enc := json.NewEncoder(e.stderr)
	_ = enc.Encode(jsonErr{Error: err.Error(), Code: errorCode(err), Command: e.path})
}

// writeJSON writes v as one indented JSON document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// jsonList writes a list element by element: an indented array (so a
// 100k-entry dump is never held in memory), or one object per line.
type jsonList struct {
	w      io.Writer
	stream bool
	n      int
}

func (l *jsonList) add(v any) error {
	if l.stream {
		return json.NewEncoder(l.w).Encode(v)
	}
	b, err := json.MarshalIndent(v, "  ", "  ")
	if err != nil {
		return err
	}
	sep := ",\n  "
	if l.n == 0 {
		sep = "[\n  "
	}
	l.n++
	_, err = fmt.Fprintf(l.w, "%s%s", sep, b)
	return err
}

// end closes the array ([] when empty); call it on failure too.
func (l *jsonList) end() error {
	if l.stream {
		return nil
	}
	if l.n == 0 {
		_, err := io.WriteString(l.w, "[]\n")
		return err
	}
	_, err := io.WriteString(l.w, "\n]\n")
	return err
}

// The one format of identifiers.
func spi32(v uint32) string { return fmt.Sprintf("0x%08x", v) }
func spi64(v uint64) string { return fmt.Sprintf("0x%016x", v) }
func reqid(v uint32) string { return fmt.Sprintf("0x%08x", v) }

// hexText turns the engine's bare hex SPI ("0a1b2c3d") into the CLI's
// form ("0x0a1b2c3d").
func hexText(s string) string {
	if s == "" || strings.HasPrefix(s, "0x") {
		return s
	}
	return "0x" + s
}

// spisText turns the engine's SPI pair "0a1b..._i 0c2d..._r" into
// "0x0a1b..._i 0x0c2d..._r".
func spisText(s string) string {
	f := strings.Fields(s)
	for i, x := range f {
		f[i] = hexText(x)
	}
	return strings.Join(f, " ")
}

// idKeys are the JSON keys whose numbers are SPIs or reqids in the
// dataplane's types (kernelops has no JSON tags: SPI, ReqID).
var idKeys = map[string]bool{"spi": true, "reqid": true}

// hexIDs re-encodes v (a kernelops value) with every SPI and reqid
// number written as the CLI writes them, "0x" and 8 hex digits.
func hexIDs(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return decodeIDs(b)
}

// rawIDs is hexIDs of JSON text (nil if it is not JSON).
func rawIDs(b json.RawMessage) any {
	x, _ := decodeIDs(b)
	return x
}

func decodeIDs(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return nil, err
	}
	return rewriteIDs(x), nil
}

func rewriteIDs(x any) any {
	switch t := x.(type) {
	case map[string]any:
		for k, v := range t {
			if n, ok := v.(json.Number); ok && idKeys[strings.ToLower(strings.ReplaceAll(k, "_", ""))] {
				if u, err := n.Int64(); err == nil && u >= 0 && u <= 0xffffffff {
					t[k] = spi32(uint32(u))
					continue
				}
			}
			t[k] = rewriteIDs(v)
		}
	case []any:
		for i, v := range t {
			t[i] = rewriteIDs(v)
		}
	}
	return x
}
