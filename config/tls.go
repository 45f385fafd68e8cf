package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLS is a sink's tls setting: tls = true (the system's CAs, no client
// certificate), or a [sinks.NAME.tls] table.
type TLS struct {
	CA         string // ca: PEM file of the CAs to trust instead of the system's
	Cert       string // cert and key: PEM files of a client certificate, for mutual TLS
	Key        string
	ServerName string // server_name: the name to verify, when not the address's host
	// InsecureSkipVerify (insecure_skip_verify) accepts any server
	// certificate: for tests only, as anyone on the way can read and change
	// the traffic.
	InsecureSkipVerify bool
}

// ClientConfig returns the crypto/tls configuration, reading the files.
func (t *TLS) ClientConfig() (*tls.Config, error) {
	c := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if t.CA != "" {
		pool, err := readCA(t.CA)
		if err != nil {
			return nil, err
		}
		c.RootCAs = pool
	}
	if t.Cert != "" || t.Key != "" {
		pair, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("loading client certificate %s and key %s: %w", t.Cert, t.Key, err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

func readCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("reading CA file %s: %w", path, errNoPEM)
	}
	return pool, nil
}

var errNoPEM = errors.New("no PEM certificate in it")

// tls reads a sink's tls setting: absent (nil), a boolean, or a table. The
// files it names are read, so that a wrong path fails at --check.
func (r *reader) tls(t *table) *TLS {
	v, ok := t.get("tls")
	if !ok {
		return nil
	}
	if b, isBool := v.(bool); isBool {
		if b {
			return &TLS{}
		}
		return nil
	}
	if _, isTable := v.(map[string]any); !isTable {
		t.wrongType("tls", "true or a table (ca, cert, key, server_name, insecure_skip_verify)", v)
		return nil
	}
	tt := t.sub("tls")
	c := &TLS{
		CA:                 tt.str("ca"),
		Cert:               tt.str("cert"),
		Key:                tt.str("key"),
		ServerName:         tt.str("server_name"),
		InsecureSkipVerify: tt.boolean("insecure_skip_verify"),
	}
	tt.done()
	if c.CA != "" {
		if _, err := readCA(c.CA); err != nil {
			r.addErr(tt.path("ca"), err)
		}
	}
	switch {
	case c.Cert != "" && c.Key == "":
		r.add(tt.path("key"), "missing: a client certificate needs its key")
	case c.Key != "" && c.Cert == "":
		r.add(tt.path("cert"), "missing: a client key needs its certificate")
	case c.Cert != "":
		if _, err := tls.LoadX509KeyPair(c.Cert, c.Key); err != nil {
			r.addErr(tt.path("cert"), fmt.Errorf("loading client certificate and key: %w", err))
		}
	}
	return c
}
