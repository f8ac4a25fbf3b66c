package sadb_test

import (
	"reflect"
	"testing"

	"github.com/keyplane/keyplane/backends/pfkey/sadb"
)

var fuzzDialects = []*sadb.Dialect{linux, freebsd, netbsd, darwin}

// FuzzParse feeds arbitrary bytes to Parse in every dialect. Parse must
// not panic; whatever it accepts must marshal again, to the same length,
// and parse back to the same message. Crashers found are kept under
// testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, g := range goldens() {
		for i, d := range fuzzDialects {
			if d == g.d {
				f.Add(uint8(i), hx(f, g.wire))
			}
		}
	}
	for i, d := range fuzzDialects {
		for _, m := range everyExt(d) {
			b, err := m.Marshal(d)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint8(i), b)
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		d := fuzzDialects[int(which)%len(fuzzDialects)]
		m, err := sadb.Parse(d, data)
		if err != nil {
			if _, ok := err.(*sadb.ParseError); !ok {
				t.Fatalf("error %T is not a *ParseError: %v", err, err)
			}
			return
		}
		out, err := m.Marshal(d)
		if err != nil {
			t.Fatalf("accepted message does not marshal: %v\n%#v", err, m)
		}
		if len(out) != len(data) {
			t.Fatalf("re-marshal is %d bytes, input %d", len(out), len(data))
		}
		again, err := sadb.Parse(d, out)
		if err != nil {
			t.Fatalf("re-marshalled message does not parse: %v", err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip changed the message\n got %#v\nwant %#v", again, m)
		}
	})
}
