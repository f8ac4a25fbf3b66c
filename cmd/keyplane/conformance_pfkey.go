//go:build linux && !no_pfkey

package main

func init() { liveHarnesses["pfkey"] = kernelHarness("pfkey") }
