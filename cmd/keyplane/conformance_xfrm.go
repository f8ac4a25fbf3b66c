//go:build linux && !no_xfrm

package main

func init() { liveHarnesses["xfrm"] = kernelHarness("xfrm") }
