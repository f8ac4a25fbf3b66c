package ike

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/ike/ikecrypto"
)

// Credentials supplies secrets the configuration does not hold, for a
// program that keeps them elsewhere (a database of peers). With
// Options.Credentials set, a connection with auth = psk may have no key
// of its own (New and Reload accept it); the engine then asks PSK. A
// Credentials that also implements CertCredentials supplies
// certificates and trust anchors as well (certcreds.go).
type Credentials interface {
	// PSK returns the pre-shared key between identity local (the
	// connection's local.id) and remote: as a responder, the identity
	// the peer sent in IKE_AUTH; as an initiator, the connection's
	// remote.id. It is called on the engine's loop, which waits: answer
	// from memory, or within ctx (cancelled after CredentialTimeout).
	// An error, or a key shorter than config.MinPSKLen, fails the
	// authentication (AUTHENTICATION_FAILED to a peer; the initiate
	// fails).
	PSK(ctx context.Context, local, remote config.Identity) ([]byte, error)
}

// CredentialTimeout bounds one Credentials call.
const CredentialTimeout = time.Second

// ErrNoPSK is a pre-shared key neither the configuration nor the
// Credentials has.
var ErrNoPSK = errors.New("no pre-shared key")

// pskFor is the pre-shared key of connection c for an IKE SA with peer:
// the configuration's, else the one Credentials gives (asked once per
// IKE SA). Runs on the loop.
func (sa *ikeSA) pskFor(c *config.Connection, peer config.Identity) ([]byte, error) {
	if len(c.PSK) > 0 {
		return c.PSK, nil
	}
	if k := orZero(sa.hs).credPSK; k != nil {
		return k, nil
	}
	e := sa.e
	if e.creds == nil {
		return nil, fmt.Errorf("%w for connection %s", ErrNoPSK, c.Name)
	}
	ctx, cancel := context.WithTimeout(e.ctx, CredentialTimeout)
	defer cancel()
	k, err := e.creds.PSK(ctx, c.LocalID, peer)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w for %s (connection %s): credentials: %w", ErrNoPSK, peer, c.Name, err)
	case len(k) < config.MinPSKLen:
		return nil, fmt.Errorf("%w for %s (connection %s): credentials gave %d bytes, want at least %d", ErrNoPSK, peer, c.Name, len(k), config.MinPSKLen)
	}
	hs := made(&sa.hs)
	hs.credPSK = append(ikecrypto.Key(nil), k...)
	return hs.credPSK, nil
}

// peerIdentity is who the SA authenticates: the peer's identity once it
// sent one, else the connection's remote.id.
func (sa *ikeSA) peerIdentity(c *config.Connection) config.Identity {
	if p := sa.rec.peerID; p != nil {
		return config.Identity{Type: p.IDType, Data: p.Data}
	}
	return c.RemoteID
}
