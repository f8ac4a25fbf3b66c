package ike

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends c as encoding/json marshals it, byte for byte, without
// reflection and without allocating for the usual entry: the control
// socket writes 100,000 of them per `keyplane child list -json`.
func (c *ChildInfo) AppendJSON(b []byte) ([]byte, error) {
	if !jsonTimeOK(c.Established) {
		return appendMarshal(b, c)
	}
	b = append(b, `{"child_id":`...)
	b = strconv.AppendUint(b, uint64(c.ID), 10)
	b = appendJSONField(b, "name", c.Name)
	b = appendJSONField(b, "ike", c.IKE)
	b = append(b, `,"ike_id":`...)
	b = strconv.AppendUint(b, uint64(c.IKEID), 10)
	b = appendJSONField(b, "state", string(c.State))
	b = appendJSONField(b, "mode", c.Mode)
	b = append(b, `,"reqid":`...)
	b = strconv.AppendUint(b, uint64(c.ReqID), 10)
	b = appendJSONField(b, "spi_in", c.SPIIn)
	b = appendJSONField(b, "spi_out", c.SPIOut)
	b = appendJSONField(b, "suite", c.Suite)
	b = append(b, `,"encap":`...)
	b = strconv.AppendBool(b, c.Encap)
	b = appendJSONField(b, "offload", c.Offload)
	b = appendJSONField(b, "local_ts", c.LocalTS)
	b = appendJSONField(b, "remote_ts", c.RemoteTS)
	b = appendJSONField(b, "local", c.Local)
	b = appendJSONField(b, "remote", c.Remote)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendUint(b, c.BytesIn, 10)
	b = append(b, `,"packets_in":`...)
	b = strconv.AppendUint(b, c.PacketsIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendUint(b, c.BytesOut, 10)
	b = append(b, `,"packets_out":`...)
	b = strconv.AppendUint(b, c.PacketsOut, 10)
	b = append(b, `,"rekey_needed":`...)
	b = strconv.AppendBool(b, c.RekeyNeeded)
	b = appendJSONTime(b, "established", c.Established)
	if c.CounterErr != "" {
		b = appendJSONField(b, "counter_error", c.CounterErr)
	}
	if c.CountersOmitted {
		b = append(b, `,"counters_omitted":true`...)
	}
	return append(b, '}'), nil
}

// AppendJSON appends s as encoding/json marshals it, as ChildInfo's.
func (s *IKESAInfo) AppendJSON(b []byte) ([]byte, error) {
	if !jsonTimeOK(s.Established) {
		return appendMarshal(b, s)
	}
	for i := range s.Children {
		if !jsonTimeOK(s.Children[i].Established) {
			return appendMarshal(b, s)
		}
	}
	b = append(b, `{"ike_id":`...)
	b = strconv.AppendUint(b, uint64(s.ID), 10)
	b = appendJSONField(b, "name", s.Name)
	b = appendJSONField(b, "state", string(s.State))
	b = appendJSONField(b, "role", s.Role)
	b = appendJSONField(b, "spi_i", s.SPIi)
	b = appendJSONField(b, "spi_r", s.SPIr)
	b = appendJSONField(b, "local", s.Local)
	b = appendJSONField(b, "remote", s.Remote)
	if s.Suite != "" {
		b = appendJSONField(b, "suite", s.Suite)
	}
	b = append(b, `,"nat_local":`...)
	b = strconv.AppendBool(b, s.NATLocal)
	b = append(b, `,"nat_remote":`...)
	b = strconv.AppendBool(b, s.NATRemote)
	b = appendJSONTime(b, "established", s.Established)
	b = append(b, `,"children":`...)
	if s.Children == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range s.Children {
			if i > 0 {
				b = append(b, ',')
			}
			b, _ = s.Children[i].AppendJSON(b) // the times were checked above
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

// AppendJSON appends d as encoding/json marshals it.
func (d *Deleted) AppendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"ike_id":`...)
	b = strconv.AppendUint(b, uint64(d.IKEID), 10)
	if d.ChildID != 0 {
		b = append(b, `,"child_id":`...)
		b = strconv.AppendUint(b, uint64(d.ChildID), 10)
	}
	return append(b, '}'), nil
}

// appendMarshal is the slow path: encoding/json itself.
func appendMarshal(b []byte, v any) ([]byte, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return b, err
	}
	return append(b, j...), nil
}

// appendJSONField appends `,"key":` and v as a JSON string.
func appendJSONField(b []byte, key, v string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendJSONString(b, v)
}

// appendJSONString appends v quoted as encoding/json quotes it: text
// that needs no escape as it is, anything else through encoding/json
// (control characters, quotes, backslashes, <>& as HTML-safe escapes,
// U+2028/2029, invalid UTF-8).
func appendJSONString(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			j, _ := json.Marshal(v) // a string always marshals
			return append(b, j...)
		}
	}
	b = append(b, '"')
	b = append(b, v...)
	return append(b, '"')
}

// appendJSONTime appends `,"key":` and t as time.Time marshals it, or
// nothing for the zero time (omitzero).
func appendJSONTime(b []byte, key string, t time.Time) []byte {
	if t.IsZero() {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':', '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// jsonTimeOK says whether t marshals as appendJSONTime writes it:
// time.Time refuses years outside 0..9999 and zone offsets of a fraction
// of a minute or of 24 hours and more.
func jsonTimeOK(t time.Time) bool {
	if t.IsZero() {
		return true
	}
	if y := t.Year(); y < 0 || y > 9999 {
		return false
	}
	_, off := t.Zone()
	return off%60 == 0 && off > -24*3600 && off < 24*3600
}
