package message

import (
	"bufio"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// goldenMessages returns every message of the captured strongSwan exchanges
// (testdata/strongswan), keyed by "file#index".
func goldenMessages(tb testing.TB) map[string][]byte {
	tb.Helper()
	files, err := filepath.Glob("testdata/strongswan/*.txt")
	if err != nil || len(files) == 0 {
		tb.Fatalf("no golden exchanges: %v", err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			tb.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 1<<20)
		i := 0
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) == 5 && fs[0] == "msg" {
				b, err := hex.DecodeString(fs[4])
				if err != nil {
					tb.Fatal(err)
				}
				out[filepath.Base(f)+"#"+strconv.Itoa(i)] = b
				i++
			}
		}
		fh.Close()
	}
	return out
}

// testCipher is a toy Cipher for codec tests: XOR with a key byte, an IV of
// ivLen bytes, an ICV that is a simple checksum over head|IV|ciphertext.
// It is not cryptography; ike/ikecrypto tests the real ciphers.
type testCipher struct {
	key            byte
	ivLen, bs, icv int
}

func (c testCipher) IVSize() int    { return c.ivLen }
func (c testCipher) BlockSize() int { return c.bs }
func (c testCipher) ICVSize() int   { return c.icv }

func (c testCipher) sum(parts ...[]byte) []byte {
	var s [4]byte
	n := 0
	for _, p := range parts {
		for _, b := range p {
			s[n%4] = s[n%4]*31 + b + byte(n)
			n++
		}
	}
	out := make([]byte, c.icv)
	for i := range out {
		out[i] = s[i%4] ^ byte(i)
	}
	return out
}

func (c testCipher) Seal(dst, head, pt []byte) ([]byte, error) {
	h := append([]byte(nil), head...)
	start := len(dst)
	for i := range c.ivLen {
		dst = append(dst, byte(0xA0+i))
	}
	for _, b := range pt {
		dst = append(dst, b^c.key)
	}
	return append(dst, c.sum(h, dst[start:])...), nil
}

func (c testCipher) Open(dst, head, body []byte) ([]byte, error) {
	if len(body) < c.ivLen+c.icv {
		return nil, errShort
	}
	n := len(body) - c.icv
	if string(c.sum(head, body[:n])) != string(body[n:]) {
		return nil, errICV
	}
	for _, b := range body[c.ivLen:n] {
		dst = append(dst, b^c.key)
	}
	return dst, nil
}

type strErr string

func (e strErr) Error() string { return string(e) }

const (
	errShort = strErr("short")
	errICV   = strErr("bad icv")
)
