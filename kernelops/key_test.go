package kernelops

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"github.com/keyplane/keyplane/iana"
	"log/slog"
	"strings"
	"testing"
)

// secret is recognisable in every encoding a leak could take.
var secret = []byte("SECRET-KEY-BYTES")

// leaks reports which rendering of secret out contains.
func leaks(out string) string {
	for name, enc := range map[string]string{
		"raw":         string(secret),
		"hex":         hex.EncodeToString(secret),
		"HEX":         strings.ToUpper(hex.EncodeToString(secret)),
		"base64":      base64.StdEncoding.EncodeToString(secret),
		"byte list":   strings.Trim(fmt.Sprint([]byte(secret)), "[]"),
		"Go bytes":    fmt.Sprintf("%#v", []byte(secret))[len("[]byte{"):20],
		"quoted part": `SECRET-KEY`,
	} {
		if strings.Contains(out, enc) {
			return name
		}
	}
	return ""
}

func TestKeyIsLogValuer(t *testing.T) {
	var k any = Key(secret)
	lv, ok := k.(slog.LogValuer)
	if !ok {
		t.Fatal("Key does not implement slog.LogValuer")
	}
	if v := lv.LogValue(); v.Kind() != slog.KindString || v.String() != "<16-byte key>" {
		t.Errorf("LogValue = %v (%v), want the string <16-byte key>", v, v.Kind())
	}
}

// Every slog handler the project uses, with a Key as an attribute, in a
// group, inside an SA logged as a whole and behind a pointer.
func TestKeyNeverLogged(t *testing.T) {
	k := Key(append([]byte(nil), secret...))
	sa := &SA{Encryption: Encryption{ID: iana.EncrAESGCM16, KeyBits: 128, Key: k}, Integrity: Integrity{Key: k}}
	handlers := map[string]func(*bytes.Buffer) slog.Handler{
		"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	}
	attrs := map[string][]any{
		"attr":        {"key", k},
		"slog.Any":    {slog.Any("key", k)},
		"group":       {slog.Group("sa", "key", k)},
		"SA value":    {"sa", *sa},
		"SA pointer":  {"sa", sa},
		"Encryption":  {"enc", sa.Encryption},
		"With":        nil, // logger.With below
		"[]Key":       {"keys", []Key{k, k}},
		"map of keys": {"keys", map[string]Key{"a": k}},
	}
	for hname, h := range handlers {
		for aname, args := range attrs {
			t.Run(hname+"/"+aname, func(t *testing.T) {
				var buf bytes.Buffer
				log := slog.New(h(&buf))
				if args == nil {
					log = log.With("key", k)
				}
				log.Info("msg", args...)
				out := buf.String()
				if l := leaks(out); l != "" {
					t.Errorf("%s handler leaks the key (%s): %s", hname, l, out)
				}
				if !strings.Contains(out, "16-byte key") {
					t.Errorf("%s handler does not show the key's length: %s", hname, out)
				}
			})
		}
	}
}

func TestKeyNeverFormatted(t *testing.T) {
	k := Key(append([]byte(nil), secret...))
	sa := &SA{Encryption: Encryption{Key: k}}
	for _, verb := range []string{"%v", "%s", "%x", "%X", "%q", "%#v", "%+v", "%d", "%o", "%08b", "% x", "%T=%v"} {
		for name, v := range map[string]any{"Key": k, "SA": *sa, "*SA": sa, "Encryption": sa.Encryption, "[]Key": []Key{k}} {
			out := fmt.Sprintf(verb, v)
			if verb == "%T=%v" {
				out = fmt.Sprintf(verb, v, v)
			}
			if l := leaks(out); l != "" {
				t.Errorf("fmt %s of %s leaks the key (%s): %s", verb, name, l, out)
			}
		}
	}
	if got := fmt.Sprint(k); got != "<16-byte key>" {
		t.Errorf("Sprint = %q", got)
	}
	if got := fmt.Sprintf("%#v", k); got != "<16-byte key>" {
		t.Errorf("%%#v = %q", got)
	}
}
