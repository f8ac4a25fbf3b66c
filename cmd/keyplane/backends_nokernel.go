//go:build !no_nokernel

package main

// The in-memory dataplane is in every binary unless built with no_nokernel.
import _ "github.com/keyplane/keyplane/backends/nokernel"
