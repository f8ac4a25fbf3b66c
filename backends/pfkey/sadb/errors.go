package sadb

import (
	"errors"
	"fmt"
)

// Sentinels a *ParseError or *MarshalError wraps.
var (
	ErrTruncated = errors.New("truncated")                   // fewer bytes than a length says
	ErrLength    = errors.New("bad length")                  // a length field that does not fit its structure
	ErrVersion   = errors.New("not PF_KEY_V2")               // sadb_msg_version != 2
	ErrDuplicate = errors.New("duplicate extension")         // an extension type twice
	ErrReserved  = errors.New("reserved extension type")     // sadb_ext_type 0
	ErrFamily    = errors.New("unsupported address family")  // sockaddr neither inet nor inet6
	ErrPrefix    = errors.New("prefix length out of range")  // above 32 / 128
	ErrAbsent    = errors.New("not in this dialect")         // marshalling an extension the kernel lacks
	ErrValue     = errors.New("value out of range for wire") // e.g. a reqid wider than the field
)

// ParseError says where a message failed to parse.
type ParseError struct {
	Offset int     // byte offset of the failing structure in the message
	Ext    ExtType // the extension, 0 for the header
	Field  string  // e.g. "sadb_msg_len", "sadb_address_prefixlen"
	Err    error   // one of the sentinels above
	Detail string
}

func (e *ParseError) Error() string {
	where := "sadb_msg"
	if e.Ext != 0 {
		where = "extension " + itoa(int(e.Ext))
	}
	s := fmt.Sprintf("pf_key parse: %s at offset %d: %s: %v", where, e.Offset, e.Field, e.Err)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *ParseError) Unwrap() error { return e.Err }

// MarshalError says which extension could not be encoded.
type MarshalError struct {
	Ext    ExtType
	Field  string
	Err    error
	Detail string
}

func (e *MarshalError) Error() string {
	s := fmt.Sprintf("pf_key marshal: extension %d: %s: %v", e.Ext, e.Field, e.Err)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *MarshalError) Unwrap() error { return e.Err }

func perr(off int, ext ExtType, field string, err error, format string, args ...any) *ParseError {
	return &ParseError{Offset: off, Ext: ext, Field: field, Err: err, Detail: fmt.Sprintf(format, args...)}
}

func merr(ext ExtType, field string, err error, format string, args ...any) *MarshalError {
	return &MarshalError{Ext: ext, Field: field, Err: err, Detail: fmt.Sprintf(format, args...)}
}
