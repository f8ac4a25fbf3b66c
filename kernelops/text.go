package kernelops

import (
	"encoding/json"
	"fmt"
)

// Enums marshal as their names so JSON output (keyplane --json, the
// control socket) reads like the CLI, and unmarshal from the same names.

func parseEnum[T interface {
	~uint8 | ~uint16
	fmt.Stringer
}](what string, text []byte, max int) (T, error) {
	s := string(text)
	for i := 0; i <= max; i++ {
		if v := T(i); v.String() == s {
			return v, nil
		}
	}
	return 0, fmt.Errorf("%s %q: %w", what, s, ErrInvalid)
}

func (p Proto) MarshalText() ([]byte, error) { return []byte(p.String()), nil }
func (p *Proto) UnmarshalText(b []byte) (err error) {
	*p, err = parseEnum[Proto]("protocol", b, 255)
	return
}
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }
func (m *Mode) UnmarshalText(b []byte) (err error) {
	*m, err = parseEnum[Mode]("mode", b, 2)
	return
}
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
func (d *Direction) UnmarshalText(b []byte) (err error) {
	*d, err = parseEnum[Direction]("direction", b, 3)
	return
}
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }
func (a *Action) UnmarshalText(b []byte) (err error) {
	*a, err = parseEnum[Action]("action", b, 4)
	return
}
func (s SAState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
func (s *SAState) UnmarshalText(b []byte) (err error) {
	*s, err = parseEnum[SAState]("SA state", b, 3)
	return
}
func (m OffloadMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }
func (m *OffloadMode) UnmarshalText(b []byte) (err error) {
	*m, err = ParseOffloadMode(string(b))
	return
}
func (k LimitKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }
func (k *LimitKind) UnmarshalText(b []byte) (err error) {
	*k, err = parseEnum[LimitKind]("limit", b, 4)
	return
}

// MarshalJSON redacts key material: JSON output never carries keys.
func (k Key) MarshalJSON() ([]byte, error) { return json.Marshal(k.String()) }

// UnmarshalJSON refuses to read keys back from redacted JSON.
func (k *Key) UnmarshalJSON([]byte) error {
	*k = nil
	return nil
}
