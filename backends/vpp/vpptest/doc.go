// Package vpptest is a test double of VPP for keyplane's VPP backend: a
// server on a real unix socket that speaks GoVPP's socket protocol with
// GoVPP's binapi codec and models the VPP 25.10 IPsec, interface and FIB
// behaviour the backend relies on, plus a fake stats segment (a memfd
// handed over the stats socket) that GoVPP's statsclient maps unchanged.
// It is not VPP and proves nothing about VPP itself; it lets the backend's
// protocol, error and recovery paths run for real in tests, and is
// compiled only with the build tag "vpp".
package vpptest
