package pipeline

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/checkpoint"
	"github.com/pgfeed/pgfeed/config"
	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/route"
	"github.com/pgfeed/pgfeed/sink"
	"github.com/pgfeed/pgfeed/sink/discard"
	"github.com/pgfeed/pgfeed/sink/file"
	"github.com/pgfeed/pgfeed/sink/kafka"
	"github.com/pgfeed/pgfeed/sink/stdout"
	"github.com/pgfeed/pgfeed/source"
	kafkasource "github.com/pgfeed/pgfeed/source/kafka"
)

// FromConfig builds a pipeline from a validated configuration. It opens the
// sinks (a file sink creates its folder, a Kafka sink connects and checks
// its topics, waiting up to ConnectTimeout), so Close them through Run, or
// CloseSinks when the pipeline never runs.
func FromConfig(cfg *config.Config, store *checkpoint.Store, log *slog.Logger) (*Pipeline, error) {
	p := &Pipeline{Store: store, Logger: log}
	databases := map[string]string{}
	for _, s := range cfg.Sources {
		if ks, ok := s.Settings.(*config.KafkaSource); ok {
			opts := &kafkasource.Options{
				Brokers: ks.Brokers, Topics: ks.Topics, Group: ks.Group,
				SASLMechanism: ks.SASL.Mechanism, SASLUser: ks.SASL.User, SASLPassword: ks.SASL.Password,
				InstanceID: ks.InstanceID, SessionTimeout: ks.SessionTimeout,
			}
			if ks.TLS != nil {
				tc, err := tlsConfig(ks.TLS)
				if err != nil {
					return nil, fmt.Errorf("sources.%s.%w", s.Name, err)
				}
				opts.TLS = tc
			}
			// Checked now, so that a broker or topic missing stops pgfeed
			// before anything starts; the group is joined by Run.
			ctx, cancel := context.WithTimeout(context.Background(), ConnectTimeout)
			err := kafkasource.Check(ctx, *opts)
			cancel()
			if err != nil {
				return nil, fmt.Errorf("sources.%s: %w", s.Name, err)
			}
			p.Sources = append(p.Sources, Source{Name: s.Name, Kafka: opts})
			continue
		}
		pgs, ok := s.Settings.(*config.PostgresSource)
		if !ok {
			return nil, fmt.Errorf("sources.%s: type %s is not available in this version of pgfeed", s.Name, s.Type)
		}
		if pc, err := pgx.ParseConfig(pgs.DSN); err == nil {
			databases[s.Name] = pc.Database
		}
		p.Sources = append(p.Sources, Source{
			Name: s.Name,
			Stream: source.Config{
				DSN: pgs.DSN, Slot: pgs.Slot, Publication: pgs.Publication, Create: pgs.Create,
				Tables: pgs.Tables, Exclude: pgs.Exclude, Filters: pgs.Filters, Logger: log,
			},
			Retain:    checkpoint.Retention{Age: pgs.Retain.Age, Bytes: uint64(max(pgs.Retain.Bytes, 0))},
			Snapshot:  pgs.Snapshot,
			Heartbeat: pgs.Heartbeat,
		})
	}
	for _, k := range cfg.Sinks {
		built, err := buildSink(k, databases)
		if err != nil {
			p.CloseSinks()
			return nil, err
		}
		p.Sinks = append(p.Sinks, built)
	}
	return p, nil
}

func buildSink(k *config.Sink, databases map[string]string) (Sink, error) {
	router, err := route.New(k.RouteOptions())
	if err != nil {
		return Sink{}, fmt.Errorf("sinks.%s: %w", k.Name, err)
	}
	opts := encode.Options{ServerName: k.Sources[0], Database: databases[k.Sources[0]]}
	enc, err := encode.New(k.Format, opts)
	if err != nil {
		return Sink{}, fmt.Errorf("sinks.%s.format: %w", k.Name, err)
	}
	if k.Format == encode.FormatAvro && (k.Type == config.SinkFile || k.Type == config.SinkStdout) {
		return Sink{}, fmt.Errorf("sinks.%s.format: avro is binary, and %s sinks write one event per line: use json, wal2json, debezium or cloudevents", k.Name, k.Type)
	}
	var s sink.Sink
	switch st := k.Settings.(type) {
	case *config.StdoutSink:
		s = stdout.New(nil)
	case *config.DiscardSink:
		s = discard.New()
	case *config.FileSink:
		maxBytes := st.RotateBytes
		if maxBytes == 0 {
			maxBytes = -1 // the config's zero means never
		}
		f, err := file.Open(st.Path, file.Options{MaxBytes: maxBytes, MaxAge: st.RotateEvery})
		if err != nil {
			return Sink{}, fmt.Errorf("sinks.%s.path: %w", k.Name, err)
		}
		s = f
	case *config.KafkaSink:
		ks, err := openKafka(k, st)
		if err != nil {
			return Sink{}, fmt.Errorf("sinks.%s: %w", k.Name, err)
		}
		s = ks
	default:
		return Sink{}, fmt.Errorf("sinks.%s: type %s is not available in this version of pgfeed", k.Name, k.Type)
	}
	return Sink{Name: k.Name, Sources: k.Sources, Sink: s, Router: router, Encoder: enc, Schemas: true}, nil
}

// CloseSinks closes every sink; for a pipeline that will not Run.
func (p *Pipeline) CloseSinks() {
	for _, k := range p.Sinks {
		_ = k.Sink.Close()
	}
}

// ConnectTimeout bounds how long FromConfig waits for a sink's server.
const ConnectTimeout = 30 * time.Second

func openKafka(k *config.Sink, st *config.KafkaSink) (*kafka.Sink, error) {
	opts := kafka.Options{
		Brokers:         st.Brokers,
		SASL:            kafka.SASL{Mechanism: st.SASL.Mechanism, User: st.SASL.User, Password: st.SASL.Password},
		Compression:     st.Compression,
		Acks:            st.Acks,
		FallbackTopic:   st.FallbackTopic,
		CreateTopics:    st.CreateTopics,
		Partitions:      st.Partitions,
		Replication:     st.Replication,
		MaxMessageBytes: int32(st.MaxMessageBytes),
		Transactional:   st.Transactional,
		TransactionalID: st.TransactionalID,
		OffsetsTopic:    st.OffsetsTopic,
	}
	// Topics that routing names without placeholders are known now:
	// checked at start, so that a missing one fails before streaming.
	for _, tmpl := range append([]string{k.Route.Default, k.Route.Other}, mapValues(k.Route.Tables)...) {
		if tmpl != "" && !strings.Contains(tmpl, "{") {
			opts.Topics = append(opts.Topics, tmpl)
		}
	}
	if st.TLS != nil {
		tc, err := tlsConfig(st.TLS)
		if err != nil {
			return nil, err
		}
		opts.TLS = tc
	}
	ctx, cancel := context.WithTimeout(context.Background(), ConnectTimeout)
	defer cancel()
	return kafka.Open(ctx, opts)
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// tlsConfig loads the files of a TLS setting.
func tlsConfig(c *config.TLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify} //nolint:gosec // insecure only when asked for, for tests
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file: no PEM certificate in %s", c.CAFile)
		}
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.cert_file: loading the client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
