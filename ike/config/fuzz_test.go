package config

import "testing"

// FuzzParse feeds arbitrary files to the parser: it must never panic, and
// a file it accepts must have named, complete connections.
func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("connections {\n c {\n  psk_env = SITE_PSK\n  local_addrs = ::1\n  children {\n   x {\n    local_ts = ::/0[tcp/22]\n   }\n  }\n }\n}\n"))
	f.Add([]byte("daemon { control = \"/a b\" # x\n}\n"))
	f.Add([]byte("a = \"\\\"\n"))
	f.Add([]byte("pools {\n p {\n  addrs = 10.3.0.5/24\n  dns = 10.3.0.53, fd00::53\n }\n q {\n  addrs = fd00::1-fd00::9\n }\n}\nconnections {\n c {\n  psk_env = SITE_PSK\n  vips = 0.0.0.0, ::\n  pools = p, q\n  children {\n   x {\n    local_ts = dynamic\n   }\n  }\n }\n}\n"))
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

// FuzzImportSwanctl feeds arbitrary files to the swanctl importer: it
// must never panic, and what it converts must parse (up to its listed
// errors) as keyplane's syntax.
func FuzzImportSwanctl(f *testing.F) {
	f.Add([]byte("connections {\n c : base {\n  local_addrs = 192.0.2.1, 192.0.2.2\n  local-1 {\n   auth = psk\n   id = a\n  }\n  children {\n   x {\n    updown = /bin/true\n   }\n  }\n }\n}\nsecrets {\n ike-1 {\n  secret = s\n }\n}\ninclude x/*.conf\n"))
	f.Add([]byte(good))
	f.Add([]byte("connections {\n c {\n  proposals = default, aes128-sha256-x25519\n }\n}\n"))
	f.Add([]byte("connections {\n c {\n  vips = 0.0.0.0\n  pools = p\n  children {\n   x {\n   }\n  }\n }\n}\npools {\n p {\n  addrs = 10.3.0.0/24\n  dns = 10.3.0.53\n  netmask = x\n  sub {\n  }\n }\n}\n"))
	f.Add([]byte("connections {\n c {\n  local {\n   id = \"a\\nb\"\n  }\n  mobike = \"x\\ny\"\n  proposals = \"p\\nq\"\n }\n}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		im, err := ImportSwanctl("fuzz.conf", src)
		if err != nil {
			return
		}
		if _, serrs := parseSyntax([]byte(im.Text)); len(serrs) > 0 {
			t.Fatalf("converted text is not keyplane syntax: %v\n%s", serrs[0], im.Text)
		}
	})
}
