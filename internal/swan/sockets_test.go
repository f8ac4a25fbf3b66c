package swan

import "testing"

func TestParseProcUDP(t *testing.T) {
	table := []byte(`   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 00000000:01F4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 0
  124: 0100007F:1194 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4243 2 0000000000000000 0
garbage
`)
	ports := map[int]bool{}
	parseProcUDP(table, ports)
	if !ports[500] || !ports[4500] || len(ports) != 2 {
		t.Fatalf("got %v, want 500 and 4500", ports)
	}
}
