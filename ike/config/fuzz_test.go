package config

import "testing"

// FuzzParse feeds arbitrary files to the parser: it must never panic, and
// a file it accepts must have named, complete connections.
func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("connections {\n c {\n  psk_env = SITE_PSK\n  local_addrs = ::1\n  children {\n   x {\n    local_ts = ::/0[tcp/22]\n   }\n  }\n }\n}\n"))
	f.Add([]byte("daemon { control = \"/a b\" # x\n}\n"))
	f.Add([]byte("a = \"\\\"\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, err := Parse("fuzz.conf", src, testOpts())
		if err != nil {
			es, ok := err.(Errors)
			if !ok || len(es) == 0 || len(es) > MaxErrors+1 {
				t.Fatalf("error of type %T (%d errors): %v", err, len(es), err)
			}
			return
		}
		for _, c := range cfg.Connections {
			if c.Name == "" || len(c.Children) == 0 || len(c.Proposals) == 0 || len(c.PSK) == 0 {
				t.Fatalf("incomplete connection accepted: %+v", c)
			}
		}
	})
}
