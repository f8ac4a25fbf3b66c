package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strconv"
	"testing"
)

// countingReader counts what the decoder takes from the connection.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// FuzzDecodeRequest: whatever a client sends, the decoder reads at most
// its limit (plus one byte to notice an overflow), answers with a short
// error or a valid request, and a valid request survives a round trip.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"cmd":"ike-list"}`,
		`{"cmd":"initiate","name":"net-1"}`,
		`{"cmd":"traffic","name":"c","args":{"dir":"out","packets":"10","size":"100"}}`,
		`{"cmd":"events"}` + "\n",
		`{"cmd":`,
		`{"cmd":"x","args":{"k":1}}`,
		`{"cmd":"x","name":"\u0000"}`,
		`{"cmd":"x","name":"\ud800"}`,
		`[{"cmd":"x"}]`,
		`{"cmd":"x","cmd":"y"}`,
		`{"CMD":"x"}`,
		"\xff\xfe{",
	} {
		f.Add([]byte(s))
	}
	const max = 512
	f.Fuzz(func(t *testing.T, data []byte) {
		cr := &countingReader{r: bytes.NewReader(data)}
		req, err := DecodeRequest(cr, max)
		if cr.n > max+1 {
			t.Fatalf("read %d bytes with a limit of %d", cr.n, max)
		}
		if err != nil {
			if len(err.Error()) > 300 {
				t.Fatalf("a %d-byte error: %.100q", len(err.Error()), err)
			}
			return
		}
		if verr := req.Validate(); verr != nil {
			t.Fatalf("accepted an invalid request %+v: %v", req, verr)
		}
		enc, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeRequest(bytes.NewReader(enc), len(enc))
		if err != nil || !reflect.DeepEqual(normal(back), normal(req)) {
			t.Fatalf("round trip of %+v: %+v, %v", req, back, err)
		}
	})
}

// normal makes an empty Args map and a nil one equal.
func normal(r Request) Request {
	if len(r.Args) == 0 {
		r.Args = nil
	}
	return r
}

// FuzzListArgs: a listing's arguments are accepted only as decimal
// numbers within 32 bits (after, limit) and 0 or 1 (stream), and what is
// accepted is what was sent.
func FuzzListArgs(f *testing.F) {
	for _, s := range [][3]string{{"", "", ""}, {"10", "100", "1"}, {"4294967295", "0", "0"}, {"4294967296", "", ""},
		{"-1", "", ""}, {"+1", "1", "1"}, {"0x10", "", ""}, {"", "1e3", ""}, {"", "", "true"}, {" 1", "", ""}} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, after, limit, stream string) {
		args := map[string]string{}
		for k, v := range map[string]string{ArgAfter: after, ArgLimit: limit, ArgStream: stream} {
			if v != "" {
				args[k] = v
			}
		}
		o, st, err := listArgs(Request{Cmd: "ike-list", Args: args})
		if err != nil {
			if !errors.Is(err, ErrBadRequest) || len(err.Error()) > 300 {
				t.Fatalf("%v: error %q", args, err)
			}
			return
		}
		check := func(k string, got uint64) {
			if v, ok := args[k]; ok {
				if n, err := strconv.ParseUint(v, 10, 32); err != nil || n != got {
					t.Fatalf("%s=%q accepted as %d", k, v, got)
				}
			} else if got != 0 {
				t.Fatalf("%s absent, got %d", k, got)
			}
		}
		check(ArgAfter, uint64(o.After))
		check(ArgLimit, uint64(o.Limit))
		if st != (args[ArgStream] == "1") {
			t.Fatalf("stream=%q taken as %v", stream, st)
		}
	})
}
