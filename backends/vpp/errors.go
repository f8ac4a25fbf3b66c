//go:build vpp

package vpp

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/keyplane/keyplane/kernelops"
	"go.fd.io/govpp/api"
)

// retvalSentinel maps VPP's vnet API errors (vnet/error.h) onto kernelops
// sentinels. SYSCALL_ERROR_1 is context-dependent in the IPsec code ("no
// such SPD", "no such SA"); callers that know better pass an override.
func retvalSentinel(rv api.VPPApiError) error {
	switch rv {
	case api.ENTRY_ALREADY_EXISTS, api.VALUE_EXIST, api.IF_ALREADY_EXISTS, api.ADDRESS_IN_USE:
		return kernelops.ErrExists
	case api.NO_SUCH_ENTRY, api.ADDRESS_NOT_FOUND_FOR_INTERFACE, api.INVALID_SW_IF_INDEX, api.NO_SUCH_FIB:
		return kernelops.ErrNotFound
	case api.INVALID_VALUE, api.INVALID_VALUE_2, api.INVALID_VALUE_3, api.INVALID_VALUE_4,
		api.KEY_LENGTH, api.INVALID_PROTOCOL, api.INVALID_ALGORITHM, api.SAME_SRC_DST,
		api.INVALID_ADDRESS_FAMILY, api.ADDRESS_LENGTH_MISMATCH:
		return kernelops.ErrInvalid
	case api.UNIMPLEMENTED, api.UNSUPPORTED, api.FEATURE_DISABLED:
		return kernelops.ErrNotSupported
	case api.INSTANCE_IN_USE, api.RSRC_IN_USE:
		return kernelops.ErrBusy
	}
	return nil
}

// errConnLost marks a request that failed because the API connection
// went away; it is wrapped with ErrBusy (retry after the reconnect).
var errConnLost = errors.New("VPP API connection lost; keyplane reconnects and re-installs what it owns")

// wrap turns an error of a VPP request into a *kernelops.Error naming the
// operation and object, with VPP's own words as Detail.
func wrap(object string, err error, override map[api.VPPApiError]error) error {
	if err == nil {
		return nil
	}
	var ke *kernelops.Error
	if errors.As(err, &ke) {
		return err
	}
	var rv api.VPPApiError
	if errors.As(err, &rv) {
		s := override[rv]
		if s == nil {
			s = retvalSentinel(rv)
		}
		detail := strings.TrimPrefix(rv.Error(), "VPPApiError: ")
		if s == nil {
			return &kernelops.Error{Object: object, Err: fmt.Errorf("VPP retval %d", int32(rv)), Detail: detail}
		}
		return &kernelops.Error{Object: object, Err: s, Detail: detail}
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &kernelops.Error{Object: object, Err: err}
	case errors.Is(err, kernelops.ErrClosed):
		return &kernelops.Error{Object: object, Err: kernelops.ErrClosed}
	case errors.Is(err, errConnLost):
		return &kernelops.Error{Object: object, Err: kernelops.ErrBusy, Detail: err.Error()}
	}
	return &kernelops.Error{Object: object, Err: kernelops.ErrBusy,
		Detail: "VPP API request failed: " + err.Error()}
}

func notSupported(object, field, detail string) error {
	return &kernelops.Error{Object: object, Field: field, Err: kernelops.ErrNotSupported, Detail: detail}
}
