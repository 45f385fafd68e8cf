// Package kafkaclient holds what the Kafka sink and the Kafka source share
// to reach brokers: seed brokers, TLS and SASL as franz-go client options.
package kafkaclient

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// SASL mechanisms.
const (
	Plain       = "PLAIN"
	SCRAMSHA256 = "SCRAM-SHA-256"
	SCRAMSHA512 = "SCRAM-SHA-512"
)

// Opts returns the client options that connect to brokers; mechanism ""
// means no SASL.
func Opts(brokers []string, tc *tls.Config, mechanism, user, password string) ([]kgo.Opt, error) {
	if len(brokers) == 0 {
		return nil, errors.New("no brokers")
	}
	opts := []kgo.Opt{kgo.SeedBrokers(brokers...)}
	if tc != nil {
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if mechanism != "" {
		m, err := Mechanism(mechanism, user, password)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

// Mechanism returns the SASL mechanism of that name.
func Mechanism(name, user, password string) (sasl.Mechanism, error) {
	switch strings.ToUpper(name) {
	case Plain:
		return plain.Auth{User: user, Pass: password}.AsMechanism(), nil
	case SCRAMSHA256:
		return scram.Auth{User: user, Pass: password}.AsSha256Mechanism(), nil
	case SCRAMSHA512:
		return scram.Auth{User: user, Pass: password}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("unknown SASL mechanism %q (have: %s, %s, %s)", name, Plain, SCRAMSHA256, SCRAMSHA512)
}
