package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyplane/keyplane/internal/testpki"
)

const certsConf = `daemon {
	control = %[1]s
}
secrets {
	private-gw {
		file = gw.key
	}
}
connections {
	site1 {
		local_addrs = 127.0.0.1
		remote_addrs = 127.0.0.2
		local_port = %[2]d
		local_port_nat = %[3]d
		local {
			auth = pubkey
			certs = gw.pem
		}
		remote {
			auth = pubkey
			cacerts = ca.pem
			crls = peer.crl
		}
		children {
			net1 {
			}
		}
	}
	site2 {
		local_addrs = 127.0.0.1
		remote_addrs = 127.0.0.3
		local_port = %[2]d
		local_port_nat = %[3]d
		local {
			auth = pubkey
			certs = gw.pem
		}
		remote {
			auth = pubkey
			cacerts = ca.pem
		}
		children {
			net2 {
			}
		}
	}
}
`

// TestCertsList: `keyplane certs list` on a daemon shows each loaded
// certificate and CRL once, with subject, issuer, validity, file and the
// connections that use it, as a table and as JSON; a reload re-reads the
// CRL file.
func TestCertsList(t *testing.T) {
	dir := t.TempDir()
	ports, err := freeUDPPorts(2)
	if err != nil {
		t.Fatal(err)
	}
	own, peer := testpki.New(t, "p256", "Own"), testpki.New(t, "p256", "Peer")
	gw := own.Leaf(t, "p256", "gw.example.org")
	testpki.Write(t, dir, "gw.pem", testpki.CertPEM(gw.X509, own.Inter.X509))
	testpki.Write(t, dir, "gw.key", testpki.KeyPEM(t, gw.Key))
	testpki.Write(t, dir, "ca.pem", testpki.CertPEM(peer.Root.X509))
	testpki.Write(t, dir, "peer.crl", testpki.CRLPEM(testpki.CRL(t, peer.Root)))
	sock := filepath.Join(dir, "kp.sock")
	conf := filepath.Join(dir, "kp.conf")
	testpki.Write(t, dir, "kp.conf", []byte(fmt.Sprintf(certsConf, sock, ports[0], ports[1])))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var dout, derr bytes.Buffer
	go func() { done <- run(ctx, &env{stdout: &dout, stderr: &derr}, []string{"daemon", "-c", conf}) }()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("daemon exited %d: %s", code, derr.String())
		}
	}()
	var out string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var code int
		if code, out, _ = runCLI(t, "certs", "list", "-s", sock); code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no control socket: %s", derr.String())
		}
	}
	for _, want := range []string{
		"local         C=CH, O=keyplane test, CN=gw.example.org",
		"intermediate  C=CH, O=keyplane test, CN=Own Intermediate CA",
		"ca            C=CH, O=keyplane test, CN=Peer Root CA",
		"crl           CRL (0 revoked)",
		"site1,site2", "4 certificates and CRLs",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("certs list lacks %q:\n%s", want, out)
		}
	}
	certs := func() []map[string]any {
		code, out, errs := runCLI(t, "certs", "list", "-s", sock, "-json")
		var cs []map[string]any
		if err := json.Unmarshal([]byte(out), &cs); code != 0 || err != nil {
			t.Fatalf("certs list -json: exit %d, %v, %s %s", code, err, out, errs)
		}
		return cs
	}
	cs := certs()
	if len(cs) != 4 || cs[0]["kind"] != "local" || cs[0]["key_file"] != "gw.key" || cs[0]["file"] != "gw.pem" ||
		fmt.Sprint(cs[3]["connections"]) != "[site1]" || cs[0]["not_after"] == nil {
		t.Errorf("certs list -json: %v", cs)
	}
	// A new CRL, read at reload.
	testpki.Write(t, dir, "peer.crl", testpki.CRLPEM(testpki.CRL(t, peer.Root, peer.Inter.X509)))
	if code, _, errs := runCLI(t, "reload", "-s", sock); code != 0 {
		t.Fatalf("reload: %s", errs)
	}
	if cs := certs(); len(cs) != 4 || cs[3]["revoked"] != float64(1) {
		t.Errorf("after reload: %v", cs)
	}
}
