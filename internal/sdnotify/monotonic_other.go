//go:build !linux

package sdnotify

import "time"

var start = time.Now()

// monotonic: systemd runs on Linux only; elsewhere nothing reads it.
func monotonic() time.Duration { return time.Since(start) }
