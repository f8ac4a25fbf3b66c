package ha

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ClientOptions are what a node needs to reach etcd: the client URLs
// and, for https endpoints, the TLS client settings (PEM files).
type ClientOptions struct {
	Endpoints []string
	// CA verifies etcd's server certificate (empty: the system's
	// roots); Cert and Key, both or neither, are this node's client
	// certificate for a server that requires one (--client-cert-auth).
	CA, Cert, Key string
	DialTimeout   time.Duration // 0: 5s
}

// ClientError is an etcd client that could not be built, naming the
// setting at fault.
type ClientError struct {
	Setting string // "tls.ca", "tls.cert", "endpoints", ...
	Err     error
}

func (e *ClientError) Error() string { return fmt.Sprintf("ha: etcd client: %s: %v", e.Setting, e.Err) }
func (e *ClientError) Unwrap() error { return e.Err }

// TLSConfig builds the TLS client configuration of o; nil when o sets
// no TLS file (plain http endpoints).
func (o ClientOptions) TLSConfig() (*tls.Config, error) {
	if o.CA == "" && o.Cert == "" && o.Key == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CA != "" {
		pem, err := os.ReadFile(o.CA)
		if err != nil {
			return nil, &ClientError{Setting: "tls.ca", Err: err}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &ClientError{Setting: "tls.ca", Err: fmt.Errorf("%s holds no PEM certificate", o.CA)}
		}
		tc.RootCAs = pool
	}
	if (o.Cert == "") != (o.Key == "") {
		return nil, &ClientError{Setting: "tls.cert", Err: fmt.Errorf("cert and key go together")}
	}
	if o.Cert != "" {
		c, err := tls.LoadX509KeyPair(o.Cert, o.Key)
		if err != nil {
			return nil, &ClientError{Setting: "tls.cert", Err: err}
		}
		tc.Certificates = []tls.Certificate{c}
	}
	return tc, nil
}

// NewClient builds the etcd client. It does not wait for etcd: the
// client connects (and reconnects) in the background, and calls fail
// until it can.
func NewClient(o ClientOptions) (*clientv3.Client, error) {
	if len(o.Endpoints) == 0 {
		return nil, &ClientError{Setting: "endpoints", Err: fmt.Errorf("none")}
	}
	tc, err := o.TLSConfig()
	if err != nil {
		return nil, err
	}
	dt := o.DialTimeout
	if dt == 0 {
		dt = 5 * time.Second
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   o.Endpoints,
		TLS:         tc,
		DialTimeout: dt,
		// The daemon logs what fails (campaign, writes, watch); the
		// client's own retries would flood its log.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, &ClientError{Setting: "endpoints", Err: err}
	}
	return cli, nil
}
