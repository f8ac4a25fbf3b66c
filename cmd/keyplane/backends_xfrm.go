//go:build linux && !no_xfrm

package main

// Linux XFRM is in every Linux binary unless built with no_xfrm.
import _ "github.com/keyplane/keyplane/backends/xfrm"
