package kernelops

import "github.com/keyplane/keyplane/iana"

// Algorithms are IANA IKEv2 transform IDs, defined once in package iana
// with their names and key layouts (iana.EncrAESGCM16,
// iana.IntegHMACSHA256_128, ...): the numbers the IKE engine negotiates
// are the ones an SA carries.
type (
	EncrID  = iana.EncrID
	IntegID = iana.IntegID
)

// AlgorithmSet lists what a dataplane can install.
type AlgorithmSet struct {
	Encryption []EncrID
	Integrity  []IntegID
}

// HasEncr reports whether e is in the set.
func (s AlgorithmSet) HasEncr(e EncrID) bool {
	for _, x := range s.Encryption {
		if x == e {
			return true
		}
	}
	return false
}

// HasInteg reports whether i is in the set (IntegNone always is).
func (s AlgorithmSet) HasInteg(i IntegID) bool {
	if i == iana.IntegNone {
		return true
	}
	for _, x := range s.Integrity {
		if x == i {
			return true
		}
	}
	return false
}
