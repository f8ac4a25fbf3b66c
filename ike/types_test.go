package ike

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The exported states are exactly the engine's: every internal state
// has its constant, and no constant is left without one.
func TestStatesExported(t *testing.T) {
	ikeWant := map[IKEState]bool{IKEInitSent: true, IKEAuthSent: true, IKEHalfOpen: true, IKEEstablished: true,
		IKEDeleting: true, IKEDead: true, IKERekeyed: true, IKERedundant: true}
	seen := map[IKEState]bool{}
	for s := ikeInitSent; s <= ikeRedundant; s++ {
		p := s.public()
		assert.True(t, ikeWant[p], "ikeState %d is %q: no IKEState constant", s, p)
		seen[p] = true
	}
	assert.Equal(t, ikeWant, seen)
	assert.True(t, strings.HasPrefix(string((ikeRedundant+1).public()), "state("), "the last internal IKE state is ikeRedundant")

	childWant := map[ChildState]bool{ChildNegotiating: true, ChildInstalled: true, ChildDeleting: true, ChildDeleted: true, ChildFailed: true}
	cseen := map[ChildState]bool{}
	for s := childNegotiating; s <= childFailed; s++ {
		p := s.public()
		assert.True(t, childWant[p], "childState %d is %q: no ChildState constant", s, p)
		cseen[p] = true
	}
	assert.Equal(t, childWant, cseen)
	assert.True(t, strings.HasPrefix(string((childFailed+1).public()), "state("), "the last internal child state is childFailed")
}

func TestSPIsText(t *testing.T) {
	for _, tc := range []struct {
		spis SPIs
		text string
	}{
		{SPIs{I: 0x0102030405060708, R: 0xa0b0c0d0e0f00010}, "0102030405060708_i a0b0c0d0e0f00010_r"},
		{SPIs{I: 0x0102030405060708}, "0102030405060708_i 0000000000000000_r"},
		{SPIs{Child: true, In: 0xc0ffee01, Out: 0x0000000a}, "c0ffee01_i 0000000a_o"},
		{SPIs{Child: true}, "00000000_i 00000000_o"},
		{SPIs{}, ""},
	} {
		assert.Equal(t, tc.text, tc.spis.String())
		var back SPIs
		require.NoError(t, back.UnmarshalText([]byte(tc.text)), tc.text)
		assert.Equal(t, tc.spis, back)
	}
	for _, bad := range []string{"x", "0102030405060708_i", "0102030405060708_i a0b0c0d0e0f00010_o",
		"c0ffee01_i 0000000a_r", "c0ffee01_i 000000a_o", "c0ffee01 0000000a_o", "c0ffee0g_i 0000000a_o",
		"+0ffee01_i 0000000a_o", "c0ffee01_i  0000000a_o", "c0ffee01_i 0000000a_o ", "0000000000000000_i 0000000000000001_r", "C0FFEE01_i 0000000a_o", strings.Repeat("9", 100)} {
		var s SPIs
		err := s.UnmarshalText([]byte(bad))
		assert.ErrorIs(t, err, ErrBadSPIs, "%q", bad)
		if err != nil {
			assert.LessOrEqual(t, len(err.Error()), 80, "the error quotes at most a bit of the input")
		}
	}
}

// An Event's JSON keeps the control socket's format: kind and state as
// words, SPIs as one string, none when there are none.
func TestEventJSON(t *testing.T) {
	ev := Event{Kind: EventChild, Name: "lan", State: ChildInstalled.String(), IKEID: 3, ChildID: 7,
		SPIs: SPIs{Child: true, In: 0xc0ffee01, Out: 0xa}}
	b, err := json.Marshal(ev)
	require.NoError(t, err)
	assert.JSONEq(t, `{"time":"0001-01-01T00:00:00Z","kind":"child","name":"lan","state":"installed",
		"spis":"c0ffee01_i 0000000a_o","ike_id":3,"child_id":7}`, string(b))
	var back Event
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, ev, back)

	b, err = json.Marshal(Event{Kind: EventLink, Name: "eth0", State: "down"})
	require.NoError(t, err)
	assert.NotContains(t, string(b), "spis")
	assert.Error(t, json.Unmarshal([]byte(`{"kind":"ike","spis":"nonsense"}`), &back))
}

// FuzzSPIsText: any text either fails with ErrBadSPIs or is what String
// prints for what it parsed to.
func FuzzSPIsText(f *testing.F) {
	for _, s := range []string{"", "0102030405060708_i a0b0c0d0e0f00010_r", "c0ffee01_i 0000000a_o", "x_i y_o", "_i _r"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		var s SPIs
		if err := s.UnmarshalText([]byte(text)); err != nil {
			if !strings.Contains(err.Error(), ErrBadSPIs.Error()) {
				t.Fatalf("%q: %v is not ErrBadSPIs", text, err)
			}
			return
		}
		if s.String() != text {
			t.Fatalf("%q parsed to %+v, prints %q", text, s, s.String())
		}
	})
}
