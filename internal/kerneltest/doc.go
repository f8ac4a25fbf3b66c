// Package kerneltest builds live conformance harnesses for keyplane's
// kernel backends (xfrm, pfkey): two network namespaces joined by a veth
// pair, the backend opened through the kernelops registry in the first
// (with its "netns" parameter), and a traffic source that sends real UDP
// packets from a host address inside the first namespace to one inside
// the second, through whatever SAs the case installed.
//
// It is test support that works with any conformance.TB, so the same
// harness serves `go test` and `keyplane conformance --backend NAME`, and
// never touches the host's own SAD and SPD. It needs root; with ESP in the
// kernel (the VM lab) the traffic is encrypted for real.
//
// The package is empty on other systems.
package kerneltest
