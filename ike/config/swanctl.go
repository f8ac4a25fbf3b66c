package config

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Import is a swanctl.conf converted to keyplane's format.
type Import struct {
	// Text is the keyplane configuration: every connection and child that
	// could be converted, with what could not as comments where it was.
	Text string
	// Skipped is what was not converted, with the reason.
	Skipped []Skipped
	// Todo are the steps left to the operator (pre-shared key files).
	Todo []string
	// Errors are what `keyplane config check` will still refuse in Text
	// (beyond the missing key files), e.g. a connection whose only
	// authentication was a certificate.
	Errors []*Error
	// Connections and Children count what was converted.
	Connections, Children int
}

// Skipped is one setting or section of the swanctl file left out.
type Skipped struct {
	Line    int    `json:"line"`
	Setting string `json:"setting"` // its path, e.g. connections.site.children.net.updown
	Why     string `json:"why"`
}

// Why a swanctl setting has no keyplane counterpart (yet); settings not
// listed get a generic reason.
var swanWhy = map[string]string{
	"send_cert":        "keyplane sends its certificate and intermediates whenever it authenticates with pubkey",
	"send_certreq":     "keyplane sends CERTREQ whenever the peer must authenticate with pubkey",
	"certs":            swanCertsWhy,
	"cacerts":          swanCertsWhy,
	"pubkeys":          "raw public keys are not implemented",
	"ah_proposals":     "AH is not supported",
	"ipcomp":           "IPComp is not supported",
	"hostaccess":       "keyplane installs no host access policies",
	"policies":         "keyplane always installs policies",
	"inactivity":       "inactivity timeouts are not implemented",
	"priority":         "policy priorities are derived, not configured",
	"aggressive":       "IKEv1 only",
	"pull":             "configuration payloads are not implemented",
	"dscp":             "DSCP of IKE packets is not configurable",
	"round":            "one authentication round is supported",
	"eap_id":           "EAP is not implemented",
	"aaa_id":           "EAP is not implemented",
	"xauth_id":         "IKEv1 only",
	"groups":           "group membership checks are not implemented",
	"cert_policy":      "certificate policy OIDs are not checked",
	"revocation":       swanCertsWhy,
	"childless":        "childless IKE SAs (RFC 6023) are not implemented",
	"ppk_id":           "post-quantum preshared keys are not implemented",
	"ppk_required":     "post-quantum preshared keys are not implemented",
	"sha256_96":        "truncated SHA-256 ICVs are not supported",
	"tfc_padding":      "TFC padding is not supported",
	"copy_df":          "the dataplane's defaults apply",
	"copy_ecn":         "the dataplane's defaults apply",
	"copy_dscp":        "the dataplane's defaults apply",
	"interface":        "binding policies to an interface is not supported",
	"per_cpu_sas":      "per-CPU SAs are not supported",
	"set_mark_in":      "setting marks on packets (set_mark_in/set_mark_out) is not supported",
	"set_mark_out":     "setting marks on packets (set_mark_in/set_mark_out) is not supported",
	"label":            "security labels are not supported",
	"label_mode":       "security labels are not supported",
	"policies_fwd_out": "keyplane installs the usual in/out/fwd policies",
}

// swanCertsWhy: swanctl's certificates and keys live in its x509* and
// private directories, which the importer does not read.
const swanCertsWhy = "certificates are not converted: write local.certs, remote.cacerts and a secrets private-NAME section by hand (docs/config.md)"

var (
	swanInclude  = regexp.MustCompile(`^\s*include\s+(\S.*)$`)
	swanTemplate = regexp.MustCompile(`^(\s*[A-Za-z0-9_./-]+)\s*:\s*([A-Za-z0-9_./-]+)\s*\{(.*)$`)
)

// ImportSwanctl converts a swanctl.conf (file names it in messages): the
// connections and children, with the settings whose meaning is the same
// in keyplane; everything else is listed in Skipped. Pre-shared keys are
// never copied: each connection gets psk_file = NAME.psk, and Todo says
// which secrets section holds the key to write there. The error is for a
// file that cannot be read as swanctl syntax at all.
func ImportSwanctl(file string, src []byte) (*Import, error) {
	im := &Import{}
	// What keyplane's syntax lacks: include statements and templates.
	lines := strings.Split(string(src), "\n")
	for i, l := range lines {
		if m := swanInclude.FindStringSubmatch(l); m != nil {
			im.skip(i+1, "include "+strings.TrimSpace(m[1]), "includes are not followed: import those files too")
			lines[i] = ""
		} else if m := swanTemplate.FindStringSubmatch(l); m != nil {
			im.skip(i+1, strings.TrimSpace(m[1])+" : "+m[2], "templates are not followed: what the section inherits from "+m[2]+" is missing")
			lines[i] = m[1] + " {" + m[3]
		}
	}
	root, serrs := parseSyntax([]byte(strings.Join(lines, "\n")))
	if len(serrs) > 0 {
		var es Errors
		for _, se := range serrs {
			es = append(es, &Error{File: file, Line: se.line, Msg: se.msg})
		}
		return nil, es
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Converted from %s by 'keyplane config import'.\n# What could not be converted is left as comments; 'keyplane config check' checks the result.\n\n", file)
	b.WriteString("backend {\n    # charon's dataplane on Linux; pfkey, vpp or nokernel are the others.\n    name = xfrm\n}\n\n")
	secrets := root.sub("secrets")
	for _, s := range root.sections {
		switch s.name {
		case "connections", "secrets", "pools":
		default:
			im.skip(s.line, s.name, "no keyplane counterpart")
		}
	}
	for _, kv := range root.settings {
		im.skip(kv.line, kv.key, "no keyplane counterpart")
	}
	if cs := root.sub("connections"); cs != nil {
		b.WriteString("connections {\n")
		for _, c := range cs.sections {
			im.connection(&b, c, secrets)
		}
		b.WriteString("}\n")
	}
	if ps := root.sub("pools"); ps != nil {
		im.pools(&b, ps)
	}
	if secrets != nil {
		for _, s := range secrets.sections {
			if !strings.HasPrefix(s.name, "ike") {
				im.skip(s.line, "secrets."+s.name, "only IKE pre-shared keys are used (psk_file)")
			}
		}
	}
	im.Text = b.String()
	slices.SortStableFunc(im.Skipped, func(a, b Skipped) int { return a.Line - b.Line })
	// Check the result as the daemon would, with stand-in keys.
	if _, err := Parse(file+" (converted)", []byte(im.Text), Options{
		ReadFile: func(string) ([]byte, error) { return []byte("a stand-in key of thirty-two bytes"), nil },
		Getenv:   func(string) (string, bool) { return "", false },
	}); err != nil {
		var es Errors
		if errors.As(err, &es) {
			im.Errors = es
		}
	}
	return im, nil
}

// pools copies the pools section: each pool's addrs and dns.
func (im *Import) pools(b *strings.Builder, s *section) {
	b.WriteString("pools {\n")
	for _, kv := range s.settings {
		im.skip(kv.line, "pools."+kv.key, "pools holds sections")
	}
	for _, p := range s.sections {
		fmt.Fprintf(b, "    %s {\n", p.name)
		for _, kv := range p.settings {
			switch kv.key {
			case "addrs", "dns":
				fmt.Fprintf(b, "        %s = %s\n", kv.key, quote(kv.value))
			default:
				why := "only addrs and dns of a pool are implemented"
				im.skip(kv.line, "pools."+p.name+"."+kv.key, why)
				fmt.Fprintf(b, "        # not converted: %s = %s (%s)\n", kv.key, oneLine(kv.value), why)
			}
		}
		for _, sub := range p.sections {
			im.skip(sub.line, "pools."+p.name+"."+sub.name, "no keyplane counterpart")
		}
		b.WriteString("    }\n")
	}
	b.WriteString("}\n")
}

func (im *Import) skip(line int, setting, why string) {
	im.Skipped = append(im.Skipped, Skipped{Line: line, Setting: setting, Why: why})
}

// Settings copied as they are (checked by the final Parse).
var (
	swanConnKeep = []string{"local_addrs", "remote_addrs", "local_port", "remote_port", "encap", "dpd_delay", "rekey_time", "rand_time",
		"fragmentation", "reauth_time", "over_time", "keyingtries", "mobike", "vips", "pools"}
	swanChildKeep = []string{"local_ts", "remote_ts", "rekey_time", "life_time", "rekey_bytes", "life_bytes",
		"rekey_packets", "life_packets", "rand_time", "rand_bytes", "rand_packets", "replay_window", "reqid", "hw_offload", "if_id_in", "if_id_out", "mark_in", "mark_out",
		"updown"}
)

func (im *Import) connection(b *strings.Builder, s *section, secrets *section) {
	path := "connections." + s.name
	im.Connections++
	fmt.Fprintf(b, "    %s {\n", s.name)
	comment := func(indent string, kv setting, why string) {
		im.skip(kv.line, path+"."+kv.key, why)
		fmt.Fprintf(b, "%s# not converted: %s = %s (%s)\n", indent, kv.key, oneLine(kv.value), why)
	}
	for _, kv := range s.settings {
		switch {
		case slices.Contains(swanConnKeep, kv.key):
			if (kv.key == "local_addrs" || kv.key == "remote_addrs") && !plainAddrs(kv.value) {
				comment("        ", kv, "keyplane takes IP addresses or %any, not host names, prefixes or ranges")
				continue
			}
			fmt.Fprintf(b, "        %s = %s\n", kv.key, quote(kv.value))
		case kv.key == "version":
			if kv.value != "2" {
				comment("        ", kv, "keyplane speaks IKEv2 only")
				continue
			}
			fmt.Fprintf(b, "        version = 2\n")
		case kv.key == "proposals":
			im.proposals(b, "        ", path, kv, true)
		case kv.key == "unique":
			if !slices.Contains([]string{"no", "never", "keep", "replace"}, kv.value) {
				comment("        ", kv, "keyplane takes no, never, keep or replace")
				continue
			}
			fmt.Fprintf(b, "        unique = %s\n", kv.value)
		default:
			comment("        ", kv, why(kv.key))
		}
	}
	fmt.Fprintf(b, "        psk_file = %s.psk\n", s.name)
	im.todoPSK(s, secrets)
	ends := map[string]bool{}
	for _, sub := range s.sections {
		switch {
		case sub.name == "children":
			fmt.Fprintf(b, "        children {\n")
			for _, ch := range sub.sections {
				im.child(b, path+".children."+ch.name, ch)
			}
			for _, kv := range sub.settings {
				im.skip(kv.line, path+".children."+kv.key, "children holds sections")
			}
			fmt.Fprintf(b, "        }\n")
		case strings.HasPrefix(sub.name, "local") || strings.HasPrefix(sub.name, "remote"):
			end := "local"
			if strings.HasPrefix(sub.name, "remote") {
				end = "remote"
			}
			if ends[end] {
				im.skip(sub.line, path+"."+sub.name, "one authentication round per end is supported; "+end+" is already converted")
				continue
			}
			ends[end] = true
			fmt.Fprintf(b, "        %s {\n", end)
			for _, kv := range sub.settings {
				switch kv.key {
				case "id":
					fmt.Fprintf(b, "            id = %s\n", quote(kv.value))
				case "auth":
					if kv.value != "psk" {
						why := "only psk and pubkey authentication are implemented"
						if kv.value == "pubkey" {
							why = swanCertsWhy
						}
						im.skip(kv.line, path+"."+sub.name+".auth", why)
						fmt.Fprintf(b, "            # not converted: auth = %s (%s)\n", oneLine(kv.value), why)
						continue
					}
					fmt.Fprintf(b, "            auth = psk\n")
				default:
					im.skip(kv.line, path+"."+sub.name+"."+kv.key, why(kv.key))
					fmt.Fprintf(b, "            # not converted: %s = %s (%s)\n", kv.key, oneLine(kv.value), why(kv.key))
				}
			}
			fmt.Fprintf(b, "        }\n")
		default:
			im.skip(sub.line, path+"."+sub.name, "no keyplane counterpart")
		}
	}
	fmt.Fprintf(b, "    }\n")
}

func (im *Import) child(b *strings.Builder, path string, s *section) {
	im.Children++
	fmt.Fprintf(b, "            %s {\n", s.name)
	const in = "                "
	comment := func(kv setting, why string) {
		im.skip(kv.line, path+"."+kv.key, why)
		fmt.Fprintf(b, "%s# not converted: %s = %s (%s)\n", in, kv.key, oneLine(kv.value), why)
	}
	for _, kv := range s.settings {
		switch {
		case slices.Contains(swanChildKeep, kv.key):
			if kv.key == "local_ts" || kv.key == "remote_ts" {
				if _, err := ParseTSList(kv.value); err != nil {
					comment(kv, err.Error())
					continue
				}
			}
			if kv.key == "if_id_in" || kv.key == "if_id_out" {
				if _, err := parseIfID(kv.value); err != nil {
					comment(kv, err.Error())
					continue
				}
			}
			if kv.key == "mark_in" || kv.key == "mark_out" {
				if _, err := parseMark(kv.value); err != nil {
					comment(kv, err.Error())
					continue
				}
			}
			fmt.Fprintf(b, "%s%s = %s\n", in, kv.key, quote(kv.value))
		case kv.key == "esp_proposals":
			im.proposals(b, in, path, kv, false)
		case kv.key == "start_action":
			if !slices.Contains([]string{"none", "start", "trap"}, kv.value) {
				comment(kv, "keyplane takes none, start or trap")
				continue
			}
			fmt.Fprintf(b, "%sstart_action = %s\n", in, kv.value)
		case kv.key == "dpd_action" || kv.key == "close_action":
			want := []string{"clear", "trap", "restart"}
			if kv.key == "close_action" {
				want = []string{"none", "trap", "start"}
			}
			if !slices.Contains(want, kv.value) {
				comment(kv, "keyplane takes "+strings.Join(want[:2], ", ")+" or "+want[2])
				continue
			}
			fmt.Fprintf(b, "%s%s = %s\n", in, kv.key, kv.value)
		case kv.key == "mode":
			if kv.value != "tunnel" && kv.value != "transport" {
				comment(kv, "keyplane takes tunnel or transport")
				continue
			}
			fmt.Fprintf(b, "%smode = %s\n", in, kv.value)
		default:
			comment(kv, why(kv.key))
		}
	}
	for _, sub := range s.sections {
		im.skip(sub.line, path+"."+sub.name, "no keyplane counterpart")
	}
	fmt.Fprintf(b, "            }\n")
}

// proposals copies the proposals keyplane understands; "default" and the
// ones it does not are left out (its defaults apply when none is left).
func (im *Import) proposals(b *strings.Builder, indent, path string, kv setting, ikeProps bool) {
	var keep []string
	for _, p := range strings.Split(kv.value, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if p == "default" {
			im.skip(kv.line, path+"."+kv.key+": default", "strongSwan's default proposals differ; keyplane's defaults apply instead")
			continue
		}
		if _, err := ParseProposals(p, ikeProps); err != nil {
			im.skip(kv.line, path+"."+kv.key+": "+p, err.Error())
			fmt.Fprintf(b, "%s# not converted: %s proposal %s (%s)\n", indent, kv.key, oneLine(p), oneLine(err.Error()))
			continue
		}
		keep = append(keep, p)
	}
	if len(keep) > 0 {
		fmt.Fprintf(b, "%s%s = %s\n", indent, kv.key, strings.Join(keep, ", "))
	}
}

// todoPSK says where the connection's key is in the swanctl file: the
// ike secrets whose ids name one of the connection's identities (or,
// without ids, apply to any).
func (im *Import) todoPSK(c *section, secrets *section) {
	ids := map[string]bool{}
	for _, sub := range c.sections {
		if strings.HasPrefix(sub.name, "local") || strings.HasPrefix(sub.name, "remote") {
			if kv, ok := sub.get("id"); ok {
				ids[kv.value] = true
			}
		}
	}
	for _, k := range []string{"local_addrs", "remote_addrs"} {
		if kv, ok := c.get(k); ok {
			for _, a := range strings.Split(kv.value, ",") {
				ids[strings.TrimSpace(a)] = true
			}
		}
	}
	var from []string
	if secrets != nil {
		for _, s := range secrets.sections {
			if !strings.HasPrefix(s.name, "ike") {
				continue
			}
			anyID, match := true, false
			for _, kv := range s.settings {
				if strings.HasPrefix(kv.key, "id") {
					anyID = false
					if ids[kv.value] {
						match = true
					}
				}
			}
			if match || anyID {
				from = append(from, "secrets."+s.name)
			}
		}
	}
	where := "no matching secrets.ike section was found"
	if len(from) > 0 {
		where = "its key is the secret of " + strings.Join(from, " or ")
	}
	im.Todo = append(im.Todo, fmt.Sprintf("connection %s: write its pre-shared key to %s.psk, beside the converted file, mode 0600 (%s)", c.name, c.name, where))
}

func why(key string) string {
	if w := swanWhy[key]; w != "" {
		return w
	}
	return "no keyplane counterpart"
}

// plainAddrs reports whether v is %any or a list of IP addresses.
func plainAddrs(v string) bool {
	if strings.TrimSpace(v) == "%any" {
		return true
	}
	for _, a := range strings.Split(v, ",") {
		ip, err := netip.ParseAddr(strings.TrimSpace(a))
		if err != nil || ip.Zone() != "" || ip.IsUnspecified() {
			return false
		}
	}
	return true
}

// quote writes a value so that keyplane's parser reads it back as it is:
// quoted when it holds a '#', a quote, a control character (an escaped
// newline in the swanctl file) or spaces at its ends.
func quote(v string) string {
	if strings.ContainsAny(v, "#\"\\") || strings.TrimSpace(v) != v || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return strconv.Quote(v)
	}
	return v
}

// oneLine keeps a value inside its comment line.
func oneLine(v string) string {
	if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return strconv.Quote(v)
	}
	return v
}
