package config

import (
	"fmt"
	"slices"
	"strings"

	"github.com/keyplane/keyplane/ike/message"
)

// Proposal is one proposal in strongSwan's syntax, e.g.
// "aes128gcm16-prfsha256-x25519" or "aes256-sha256-ecp256": algorithms of
// each transform type in preference order.
type Proposal struct {
	Encr  []Encr
	Integ []message.IntegID
	PRF   []message.PRFID
	DH    []message.DHGroup
	ESN   []message.ESNID
	// AddKE are the additional key exchanges of RFC 9370, AddKE[0] for
	// ADDKE1, in strongSwan 6's syntax "ke1_mlkem768" (and "ke1_none",
	// which makes the exchange optional).
	AddKE [7][]message.DHGroup
	Text  string // as written
}

// Encr is an encryption transform with its key length in bits.
type Encr struct {
	ID      message.EncrID
	KeyBits uint16
}

func (p Proposal) String() string { return p.Text }

// Transforms returns the proposal's transforms in the order RFC 7296
// lists transform types (ENCR, PRF, INTEG, KE, ESN). For an ESP proposal
// in IKE_AUTH, withKE false leaves the KE transforms out (no PFS there).
func (p Proposal) Transforms(withKE bool) []message.Transform {
	n := len(p.Encr) + len(p.PRF) + len(p.Integ) + len(p.ESN)
	if withKE {
		n += len(p.DH)
		for _, ks := range p.AddKE {
			n += len(ks)
		}
	}
	out := make([]message.Transform, 0, n) // one allocation: proposals are matched in every exchange
	for _, e := range p.Encr {
		out = append(out, message.EncrTransform(e.ID, e.KeyBits))
	}
	for _, x := range p.PRF {
		out = append(out, message.PRFTransform(x))
	}
	for _, x := range p.Integ {
		out = append(out, message.IntegTransform(x))
	}
	if withKE {
		for _, x := range p.DH {
			out = append(out, message.KETransform(x))
		}
	}
	for _, x := range p.ESN {
		out = append(out, message.ESNTransform(x))
	}
	if withKE {
		for i, ks := range p.AddKE {
			for _, x := range ks {
				out = append(out, message.AddKETransform(i+1, x))
			}
		}
	}
	return out
}

// HasAddKE reports whether the proposal has additional key exchanges.
func (p Proposal) HasAddKE() bool {
	for _, ks := range p.AddKE {
		if len(ks) > 0 {
			return true
		}
	}
	return false
}

type keyword struct {
	encr  *Encr
	integ message.IntegID
	prf   message.PRFID
	dh    message.DHGroup
	esn   *message.ESNID
	none  bool // "none": no key exchange, only as an ADDKE (keN_none)
}

var (
	esnNo  = message.ESNNo
	esnYes = message.ESNYes
)

// keywords are strongSwan's algorithm names for what keyplane implements
// (ike/ikecrypto) and the kernels install.
var keywords = func() map[string]keyword {
	k := map[string]keyword{}
	for _, bits := range []uint16{128, 192, 256} {
		b := fmt.Sprint(bits)
		k["aes"+b] = keyword{encr: &Encr{message.EncrAESCBC, bits}}
		gcm := keyword{encr: &Encr{message.EncrAESGCM16, bits}}
		k["aes"+b+"gcm16"] = gcm
		k["aes"+b+"gcm128"] = gcm
		k["aes"+b+"gcm"] = gcm
	}
	for _, bits := range []uint16{128, 192, 256} {
		// AES-CCM: ESP only (see ccmForIKE). strongSwan's names give
		// the ICV in octets or bits; without a suffix it is 16 octets.
		b := fmt.Sprint(bits)
		for suffix, id := range map[string]message.EncrID{
			"8": message.EncrAESCCM8, "64": message.EncrAESCCM8,
			"12": message.EncrAESCCM12, "96": message.EncrAESCCM12,
			"16": message.EncrAESCCM16, "128": message.EncrAESCCM16, "": message.EncrAESCCM16,
		} {
			k["aes"+b+"ccm"+suffix] = keyword{encr: &Encr{id, bits}}
		}
	}
	k["aes"] = k["aes128"]
	k["chacha20poly1305"] = keyword{encr: &Encr{message.EncrChaCha20Poly1305, 0}}
	// HMAC-SHA1 for legacy peers; no default proposal names it (nor do
	// strongSwan's defaults).
	k["sha1"] = keyword{integ: message.IntegHMACSHA196}
	k["sha"] = k["sha1"]
	k["prfsha1"] = keyword{prf: message.PRFHMACSHA1}
	k["sha256"] = keyword{integ: message.IntegHMACSHA2256128}
	k["sha2_256"] = k["sha256"]
	k["sha384"] = keyword{integ: message.IntegHMACSHA2384192}
	k["sha2_384"] = k["sha384"]
	k["sha512"] = keyword{integ: message.IntegHMACSHA2512256}
	k["sha2_512"] = k["sha512"]
	k["prfsha256"] = keyword{prf: message.PRFHMACSHA2256}
	k["prfsha384"] = keyword{prf: message.PRFHMACSHA2384}
	k["prfsha512"] = keyword{prf: message.PRFHMACSHA2512}
	k["x25519"] = keyword{dh: message.DHCurve25519}
	k["curve25519"] = k["x25519"]
	k["ecp256"] = keyword{dh: message.DHECP256}
	k["ecp384"] = keyword{dh: message.DHECP384}
	k["ecp521"] = keyword{dh: message.DHECP521}
	k["modp2048"] = keyword{dh: message.DHModp2048}
	k["modp3072"] = keyword{dh: message.DHModp3072}
	k["modp4096"] = keyword{dh: message.DHModp4096}
	k["mlkem768"] = keyword{dh: message.DHMLKEM768}
	k["mlkem1024"] = keyword{dh: message.DHMLKEM1024}
	k["none"] = keyword{none: true}
	k["esn"] = keyword{esn: &esnYes}
	k["noesn"] = keyword{esn: &esnNo}
	return k
}()

// integPRF is the PRF strongSwan derives from an integrity algorithm when
// an IKE proposal names none.
var integPRF = map[message.IntegID]message.PRFID{
	message.IntegHMACSHA196:     message.PRFHMACSHA1,
	message.IntegHMACSHA2256128: message.PRFHMACSHA2256,
	message.IntegHMACSHA2384192: message.PRFHMACSHA2384,
	message.IntegHMACSHA2512256: message.PRFHMACSHA2512,
}

// ParseProposals reads a comma-separated list of proposals. ike selects
// the IKE rules (a PRF and a key exchange are needed; the PRF defaults to
// the integrity algorithm's) over the ESP ones (an ESN transform is
// always sent, noesn by default; a key exchange means PFS for later
// CREATE_CHILD_SA exchanges).
func ParseProposals(s string, ike bool) ([]Proposal, error) {
	return parseProposals(s, ike)
}

func parseProposals(s string, ike bool) ([]Proposal, error) {
	var out []Proposal
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("empty proposal in %q", s)
		}
		p, err := parseProposal(part, ike)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no proposals")
	}
	return out, nil
}

func parseProposal(s string, ike bool) (Proposal, error) {
	p := Proposal{Text: s}
	for word := range strings.SplitSeq(strings.ToLower(s), "-") {
		if n, method, ok := addKEWord(word); ok {
			if n == 0 {
				return p, fmt.Errorf("proposal %q: %q: additional key exchanges are ke1_ to ke7_", s, word)
			}
			k, ok := keywords[method]
			if !ok || (k.dh == 0 && !k.none) {
				return p, fmt.Errorf("proposal %q: %q is not a key exchange method", s, word)
			}
			g := k.dh // DHNone for keN_none
			if !slices.Contains(p.AddKE[n-1], g) {
				p.AddKE[n-1] = append(p.AddKE[n-1], g)
			}
			continue
		}
		k, ok := keywords[word]
		if !ok {
			return p, fmt.Errorf("proposal %q: unknown algorithm %q (known: %s)", s, word, knownWords())
		}
		switch {
		case k.none:
			return p, fmt.Errorf("proposal %q: \"none\" is only for additional key exchanges (keN_none)", s)
		case k.encr != nil:
			if !slices.Contains(p.Encr, *k.encr) {
				p.Encr = append(p.Encr, *k.encr)
			}
		case k.integ != 0:
			if !slices.Contains(p.Integ, k.integ) {
				p.Integ = append(p.Integ, k.integ)
			}
		case k.prf != 0:
			if !slices.Contains(p.PRF, k.prf) {
				p.PRF = append(p.PRF, k.prf)
			}
		case k.dh != 0:
			if !slices.Contains(p.DH, k.dh) {
				p.DH = append(p.DH, k.dh)
			}
		case k.esn != nil:
			if !slices.Contains(p.ESN, *k.esn) {
				p.ESN = append(p.ESN, *k.esn)
			}
		}
	}
	if len(p.Encr) == 0 {
		return p, fmt.Errorf("proposal %q: no encryption algorithm", s)
	}
	aead, plain := 0, 0
	for _, e := range p.Encr {
		if e.ID.AEAD() {
			aead++
		} else {
			plain++
		}
	}
	if aead > 0 && plain > 0 {
		return p, fmt.Errorf("proposal %q mixes AEAD and non-AEAD ciphers; write them as two proposals", s)
	}
	for _, e := range p.Encr {
		if ike && (e.ID == message.EncrAESCCM8 || e.ID == message.EncrAESCCM12 || e.ID == message.EncrAESCCM16) {
			return p, fmt.Errorf("proposal %q: %v is for ESP proposals; keyplane has no CCM for the IKE SA", s, e.ID)
		}
	}
	if aead > 0 && len(p.Integ) > 0 {
		return p, fmt.Errorf("proposal %q: an AEAD cipher takes no integrity algorithm", s)
	}
	if plain > 0 && len(p.Integ) == 0 {
		return p, fmt.Errorf("proposal %q: %v needs an integrity algorithm (e.g. sha256)", s, p.Encr[0].ID)
	}
	if ike {
		if len(p.ESN) > 0 {
			return p, fmt.Errorf("proposal %q: esn/noesn is for ESP proposals", s)
		}
		if len(p.PRF) == 0 {
			for _, i := range p.Integ {
				if prf, ok := integPRF[i]; ok && !slices.Contains(p.PRF, prf) {
					p.PRF = append(p.PRF, prf)
				}
			}
		}
		if len(p.PRF) == 0 {
			return p, fmt.Errorf("proposal %q: no PRF (add e.g. prfsha256)", s)
		}
		if len(p.DH) == 0 {
			return p, fmt.Errorf("proposal %q: no key exchange method (add e.g. x25519)", s)
		}
		for i, ks := range p.AddKE {
			if len(ks) == 1 && ks[0] == message.DHNone {
				return p, fmt.Errorf("proposal %q: ke%d_none alone offers no additional key exchange", s, i+1)
			}
		}
	} else {
		if len(p.PRF) > 0 {
			return p, fmt.Errorf("proposal %q: a PRF is for IKE proposals", s)
		}
		if len(p.ESN) == 0 {
			p.ESN = []message.ESNID{message.ESNNo}
		}
	}
	return p, nil
}

// addKEWord splits strongSwan 6's additional key exchange syntax,
// "ke1_mlkem768": n is 1 to 7 (0 if out of range).
func addKEWord(w string) (n int, method string, ok bool) {
	rest, found := strings.CutPrefix(w, "ke")
	if !found {
		return 0, "", false
	}
	num, method, found := strings.Cut(rest, "_")
	if !found || len(num) != 1 || num[0] < '0' || num[0] > '9' {
		return 0, "", false
	}
	n = int(num[0] - '0')
	if n < 1 || n > 7 {
		n = 0
	}
	return n, method, true
}

func knownWords() string {
	ws := make([]string, 0, len(keywords))
	for w := range keywords {
		ws = append(ws, w)
	}
	slices.Sort(ws)
	return strings.Join(ws, " ")
}
