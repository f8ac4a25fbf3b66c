package pfkey

import "sync"

// Test hooks for the external tests.

// SetEventRcvBuf sets the event socket's receive buffer for backends
// opened afterwards and returns a function restoring it.
func SetEventRcvBuf(n int) (restore func()) {
	old := eventRcvBuf
	eventRcvBuf = n
	return func() { eventRcvBuf = old }
}

// StallEvents makes the event reader wait before each read until release
// is called (release may be called more than once).
func StallEvents() (release func(), restore func()) {
	ch := make(chan struct{})
	var once sync.Once
	testHookBeforeRead = func() { <-ch }
	return func() { once.Do(func() { close(ch) }) }, func() { testHookBeforeRead = nil }
}

// MayHaveLost exposes the receive-queue check of the event reader.
var MayHaveLost = mayHaveLost
