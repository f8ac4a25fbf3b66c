//go:build (linux || freebsd || netbsd || openbsd || darwin) && !no_pfkey

package main

// PF_KEY v2 is in every binary for an OS that has it unless built with no_pfkey.
import _ "github.com/keyplane/keyplane/backends/pfkey"
