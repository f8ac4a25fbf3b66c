package conformance

import (
	"errors"
	"net/netip"

	"github.com/keyplane/keyplane/kernelops"
)

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// mustPrefix parses without masking, so tests can build prefixes with
// host bits set on purpose.
func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func asKError(err error) *kernelops.Error {
	var ke *kernelops.Error
	if errors.As(err, &ke) {
		return ke
	}
	return nil
}
