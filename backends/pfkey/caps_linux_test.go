package pfkey

import (
	"testing"

	"github.com/keyplane/keyplane/backends/pfkey/sadb"
	"github.com/keyplane/keyplane/iana"
	"github.com/keyplane/keyplane/kernelops"
)

func TestCapabilitiesNotes(t *testing.T) {
	reply := &sadb.Msg{Exts: []sadb.Ext{
		&sadb.Supported{T: sadb.ExtSupportedAuth, Algs: []sadb.Alg{{ID: 3}, {ID: 5}}},
		&sadb.Supported{T: sadb.ExtSupportedEncrypt, Algs: []sadb.Alg{{ID: 12}, {ID: 20}}},
	}}
	algs := supportedAlgorithms(linuxLE, reply)
	if len(algs.Encryption) != 1 || algs.Encryption[0] != iana.EncrAESCBC ||
		len(algs.Integrity) != 1 || algs.Integrity[0] != iana.IntegHMACSHA1_96 {
		t.Fatalf("algorithms %+v: want only what both the table and the kernel have", algs)
	}
	// The real Linux description: every capability it lacks says why.
	c := host.capabilities(algs, kernelops.Options{}.WithDefaults(), kernelops.CapMigrate,
		map[kernelops.Cap]string{kernelops.CapMigrateEvents: "not in the initial namespace"})
	for _, x := range kernelops.AllCaps() {
		if !c.Has(x) && c.Why(x) == "not supported by this dataplane" {
			t.Errorf("absent %s has no note", x)
		}
	}
	if _, ok := c.Notes[kernelops.CapSAD]; ok {
		t.Errorf("note on a present, unqualified capability")
	}
}
