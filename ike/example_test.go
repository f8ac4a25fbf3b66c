package ike_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/keyplane/keyplane/backends/nokernel"
	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/ikecrypto"
	"github.com/keyplane/keyplane/kernelops"
)

// freePort finds a UDP port free on loopback (the examples run two
// engines on one host).
func freePort() uint16 {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

// site builds one end's configuration in Go: connection name on
// loopback ports (ike, nat), towards the peer at (peerIKE, peerNAT),
// with one child between local and remote subnets.
func site(name, peer string, ike, nat, peerIKE, peerNAT uint16, local, remote string) *config.Config {
	cfg := config.Defaults()
	c := config.DefaultConnection(name)
	c.LocalAddr = netip.MustParseAddr("127.0.0.1")
	c.RemoteAddr = netip.MustParseAddr("127.0.0.1")
	c.LocalPort, c.LocalNATPort, c.RemotePort, c.RemoteNATPort = ike, nat, peerIKE, peerNAT
	var err error
	if c.LocalID, err = config.ParseIdentity(name + ".example.org"); err != nil {
		log.Fatal(err)
	}
	if c.RemoteID, err = config.ParseIdentity(peer + ".example.org"); err != nil {
		log.Fatal(err)
	}
	ch := config.DefaultChild(name + "-net")
	if ch.LocalTS, err = config.ParseTSList(local); err != nil {
		log.Fatal(err)
	}
	if ch.RemoteTS, err = config.ParseTSList(remote); err != nil {
		log.Fatal(err)
	}
	c.Children = append(c.Children, ch)
	cfg.Connections = append(cfg.Connections, c)
	return cfg
}

// start runs an engine on an in-memory dataplane (nokernel); stop ends
// both.
func start(cfg *config.Config, o ike.Options) (*ike.Engine, func()) {
	ctx := context.Background()
	b, err := nokernel.Open(ctx, kernelops.Options{})
	if err != nil {
		log.Fatal(err)
	}
	o.Backend, o.Config = b, cfg
	o.Logger = slog.New(slog.DiscardHandler)
	e, err := ike.New(ctx, o)
	if err != nil {
		log.Fatal(err)
	}
	return e, func() { e.Close(); b.Close() }
}

// printHooks prints each CHILD SA going up or down.
type printHooks struct{ seen chan string }

func (h printHooks) ChildUp(c ike.ChildHookInfo) {
	h.seen <- fmt.Sprintf("up %s (IKE SA %d, CHILD SA %d) %v === %v", c.Child, c.IKEID, c.ChildID, c.LocalTS, c.RemoteTS)
}

func (h printHooks) ChildDown(c ike.ChildHookInfo) {
	h.seen <- fmt.Sprintf("down %s (CHILD SA %d): %s", c.Child, c.ChildID, c.Reason)
}

// Two engines on loopback, each on its own in-memory dataplane, with
// configurations built in Go: west initiates, east's hooks see the
// CHILD SA come up and go down.
func Example() {
	wIKE, wNAT, eIKE, eNAT := freePort(), freePort(), freePort(), freePort()
	westCfg := site("west", "east", wIKE, wNAT, eIKE, eNAT, "10.1.0.0/16", "10.2.0.0/16")
	eastCfg := site("east", "west", eIKE, eNAT, wIKE, wNAT, "10.2.0.0/16", "10.1.0.0/16")
	for _, cfg := range []*config.Config{westCfg, eastCfg} {
		cfg.Connections[0].PSK = ikecrypto.Key("a pre-shared key of 32 bytes....")
	}
	west, stopWest := start(westCfg, ike.Options{})
	defer stopWest()
	hooks := printHooks{seen: make(chan string, 4)}
	_, stopEast := start(eastCfg, ike.Options{Hooks: hooks})
	defer stopEast()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := west.Initiate(ctx, "west-net"); err != nil {
		log.Fatal(err)
	}
	fmt.Println("east:", <-hooks.seen)
	sas, err := west.IKESAs(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, sa := range sas {
		fmt.Printf("west: IKE SA %d %s %s, %d child %s\n", sa.ID, sa.Name, sa.State, len(sa.Children), sa.Children[0].State)
	}
	if err := west.Terminate(ctx, "west"); err != nil {
		log.Fatal(err)
	}
	fmt.Println("east:", <-hooks.seen)
	// Output:
	// east: up east-net (IKE SA 1, CHILD SA 1) [10.2.0.0/16] === [10.1.0.0/16]
	// west: IKE SA 1 west established, 1 child installed
	// east: down east-net (CHILD SA 1): deleted by peer
}

// keyring is a program's own store of pre-shared keys, by the peer's
// identity.
type keyring map[string][]byte

func (k keyring) PSK(_ context.Context, local, remote config.Identity) ([]byte, error) {
	key, ok := k[remote.String()]
	if !ok {
		return nil, fmt.Errorf("no key for %s", remote)
	}
	return key, nil
}

// An initiator whose connection has no fixed peer (remote_addrs =
// %any) is told the peer's address when it initiates; the responder's
// configuration holds no key: its Credentials look the peer up.
func ExampleEngine_InitiateTo() {
	wIKE, wNAT, eIKE, eNAT := freePort(), freePort(), freePort(), freePort()
	westCfg := site("west", "east", wIKE, wNAT, eIKE, eNAT, "10.1.0.0/16", "10.2.0.0/16")
	westCfg.Connections[0].RemoteAddr = netip.Addr{} // %any
	westCfg.Connections[0].PSK = ikecrypto.Key("west's key with east, 32 bytes..")
	eastCfg := site("east", "west", eIKE, eNAT, wIKE, wNAT, "10.2.0.0/16", "10.1.0.0/16")
	west, stopWest := start(westCfg, ike.Options{})
	defer stopWest()
	east, stopEast := start(eastCfg, ike.Options{Credentials: keyring{
		"west.example.org": []byte("west's key with east, 32 bytes.."),
	}})
	defer stopEast()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fmt.Println("without an address:", west.Initiate(ctx, "west-net"))
	peer := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), eIKE)
	if err := west.InitiateTo(ctx, "west-net", peer); err != nil {
		log.Fatal(err)
	}
	chs, err := east.Children(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("east:", chs[0].Name, chs[0].State, chs[0].LocalTS, "===", chs[0].RemoteTS)
	// Output:
	// without an address: child west-net: connection west has no remote address to initiate to
	// east: east-net installed 10.2.0.0/16 === 10.1.0.0/16
}
