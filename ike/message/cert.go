package message

import "crypto/sha1"

// Cert is the Certificate payload (RFC 7296 §3.6): one certificate, CRL or
// other object in the given encoding. For CertX509 Data is one DER X.509
// certificate; for CertHashURLX509 and CertHashURLBundle a 20-octet SHA-1
// hash followed by a URL (RFC 7296 §3.6).
type Cert struct {
	Encoding CertEncoding
	Data     []byte
}

func (*Cert) Type() PayloadType { return PayloadCERT }

func (p *Cert) appendBody(b []byte) ([]byte, error) {
	if err := checkCertData(p.Encoding, p.Data); err != nil {
		return nil, eerr(PayloadCERT, "%s", err.Reason)
	}
	return append(append(b, byte(p.Encoding)), p.Data...), nil
}

// HashURL returns the hash and URL of a Hash and URL encoding.
func (p *Cert) HashURL() (hash [sha1.Size]byte, url string, ok bool) {
	if (p.Encoding != CertHashURLX509 && p.Encoding != CertHashURLBundle) || len(p.Data) <= sha1.Size {
		return hash, "", false
	}
	copy(hash[:], p.Data)
	return hash, string(p.Data[sha1.Size:]), true
}

func checkCertData(e CertEncoding, d []byte) *ParseError {
	switch e {
	case CertX509, CertCRL, CertPKCS7, CertRawPublicKey:
		if len(d) == 0 {
			return perr(0, PayloadCERT, ErrInvalidSyntax, "%v without data", e)
		}
	case CertHashURLX509, CertHashURLBundle:
		if len(d) <= sha1.Size {
			return perr(0, PayloadCERT, ErrInvalidSyntax, "%v of %d octets, need a %d-octet hash and a URL", e, len(d), sha1.Size)
		}
	}
	return nil
}

func decodeCert(body []byte, off int) (*Cert, error) {
	if len(body) < 1 {
		return nil, perr(off, PayloadCERT, ErrTruncated, "CERT body without Cert Encoding")
	}
	p := &Cert{Encoding: CertEncoding(body[0]), Data: body[1:]}
	if e := checkCertData(p.Encoding, p.Data); e != nil {
		e.Offset = off + 1
		return nil, e
	}
	return p, nil
}

// CertReq is the Certificate Request payload (RFC 7296 §3.7). For
// CertX509 the Certification Authority field is a list of SHA-1 hashes of
// the trusted CAs' SubjectPublicKeyInfo, possibly empty ("any CA").
//
// A CERTREQ is a hint, and often arrives in IKE_SA_INIT from peers that
// authenticate with pre-shared keys: decoding accepts any content, so an
// odd one does not fail the whole message; CheckHashes says whether the
// list is well formed.
type CertReq struct {
	Encoding CertEncoding
	// Authorities is the Certification Authority field as sent.
	Authorities []byte
}

func (*CertReq) Type() PayloadType { return PayloadCERTREQ }

// NewCertReq returns an X.509 certificate request for the CAs with these
// key hashes (pki.KeyHash).
func NewCertReq(hashes ...[sha1.Size]byte) *CertReq {
	b := make([]byte, 0, len(hashes)*sha1.Size)
	for _, h := range hashes {
		b = append(b, h[:]...)
	}
	return &CertReq{Encoding: CertX509, Authorities: b}
}

// CheckHashes reports a Certification Authority field of an X.509
// request that is not a whole number of SHA-1 hashes, as a *ParseError.
func (p *CertReq) CheckHashes() error {
	if p.Encoding == CertX509 && len(p.Authorities)%sha1.Size != 0 {
		return perr(1, PayloadCERTREQ, ErrInvalidSyntax, "%d octets of CA hashes is not a multiple of %d", len(p.Authorities), sha1.Size)
	}
	return nil
}

// Hashes returns the CA key hashes of an X.509 certificate request (the
// whole hashes, if the field is malformed).
func (p *CertReq) Hashes() [][sha1.Size]byte {
	if p.Encoding != CertX509 {
		return nil
	}
	out := make([][sha1.Size]byte, 0, len(p.Authorities)/sha1.Size)
	for b := p.Authorities; len(b) >= sha1.Size; b = b[sha1.Size:] {
		out = append(out, [sha1.Size]byte(b[:sha1.Size]))
	}
	return out
}

func (p *CertReq) appendBody(b []byte) ([]byte, error) {
	return append(append(b, byte(p.Encoding)), p.Authorities...), nil
}

func decodeCertReq(body []byte, off int) (*CertReq, error) {
	if len(body) < 1 {
		return nil, perr(off, PayloadCERTREQ, ErrTruncated, "CERTREQ body without Cert Encoding")
	}
	return &CertReq{Encoding: CertEncoding(body[0]), Authorities: body[1:]}, nil
}
