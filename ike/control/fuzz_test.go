package control

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
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
