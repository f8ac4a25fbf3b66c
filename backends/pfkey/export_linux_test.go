package pfkey

// Test hooks for the external tests.

// SetEventRcvBuf sets the event socket's receive buffer for backends
// opened afterwards and returns a function restoring it.
func SetEventRcvBuf(n int) (restore func()) {
	old := eventRcvBuf
	eventRcvBuf = n
	return func() { eventRcvBuf = old }
}

// StallEvents makes the event reader wait for a receive on the returned
// channel before each read; closing it lets the reader run freely.
func StallEvents() (release chan struct{}, restore func()) {
	release = make(chan struct{})
	testHookBeforeRead = func() { <-release }
	return release, func() { testHookBeforeRead = nil }
}

// MayHaveLost exposes the receive-queue check of the event reader.
var MayHaveLost = mayHaveLost
