package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/checkpoint"
	"github.com/pgfeed/pgfeed/config"
	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/encode/schemaregistry"
	"github.com/pgfeed/pgfeed/route"
	"github.com/pgfeed/pgfeed/sink"
	"github.com/pgfeed/pgfeed/sink/avrofile"
	"github.com/pgfeed/pgfeed/sink/discard"
	"github.com/pgfeed/pgfeed/sink/file"
	"github.com/pgfeed/pgfeed/sink/kafka"
	"github.com/pgfeed/pgfeed/sink/stdout"
	"github.com/pgfeed/pgfeed/sink/webhook"
	"github.com/pgfeed/pgfeed/sink/websocket"
	"github.com/pgfeed/pgfeed/source"
	kafkasource "github.com/pgfeed/pgfeed/source/kafka"
)

// FromConfig builds a pipeline from a validated configuration. It opens the
// sinks (a file sink creates its folder), so Close them through Run, or
// CloseSinks when the pipeline never runs.
func FromConfig(cfg *config.Config, store checkpoint.Storage, log *slog.Logger) (*Pipeline, error) {
	return build(cfg, store, log, true)
}

// Check runs every check of FromConfig, and those that each source's Open
// runs before it connects, without opening a sink or connecting anywhere:
// what pgfeed run --check reports is what pgfeed run would refuse, in the
// same words. config.Parse checks the file's settings; this checks what
// this version of pgfeed can build from them.
func Check(cfg *config.Config) error {
	if _, err := build(cfg, nil, nil, false); err != nil {
		return err
	}
	if cfg.UsesPostgresCheckpoints() {
		return nil // nothing local to read; run connects to it
	}
	// Read as FromConfig's caller will open it; without creating it, and
	// a file that a running pgfeed holds is not read.
	return checkpoint.Verify(cfg.Checkpoint)
}

// build is FromConfig when open, else Check: the same checks in the same
// order, so that the two cannot drift apart.
func build(cfg *config.Config, store checkpoint.Storage, log *slog.Logger, open bool) (*Pipeline, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Pipeline{Store: store, Logger: log}
	databases := map[string]string{}
	for _, s := range cfg.Sources {
		if ks, ok := s.Settings.(*config.KafkaSource); ok {
			src, err := buildKafkaSource(s.Name, ks, open)
			if err != nil {
				return nil, err
			}
			p.Sources = append(p.Sources, src)
			continue
		}
		pgs, ok := s.Settings.(*config.PostgresSource)
		if !ok {
			return nil, fmt.Errorf("sources.%s: type %s is not available in this version of pgfeed", s.Name, s.Type)
		}
		stream := source.Config{
			DSN: pgs.DSN, Slot: pgs.Slot, Publication: pgs.Publication, Create: pgs.Create,
			Tables: pgs.Tables, Exclude: pgs.Exclude, Filters: pgs.Filters, Logger: log,
			BackfillNewTables: pgs.Snapshot, Heartbeat: pgs.Heartbeat, Failover: pgs.Failover,
		}
		if err := stream.Validate(); err != nil {
			return nil, sourceError(s.Name, err)
		}
		if pc, err := pgx.ParseConfig(pgs.DSN); err == nil {
			databases[s.Name] = pc.Database
		}
		p.Sources = append(p.Sources, Source{
			Name:     s.Name,
			Stream:   stream,
			Retain:   checkpoint.Retention{Age: pgs.Retain.Age, Bytes: uint64(max(pgs.Retain.Bytes, 0))},
			Snapshot: pgs.Snapshot,
		})
	}
	for _, k := range cfg.Sinks {
		built, err := buildSink(k, databases, log, open, cfg.HTTP.Token)
		if err != nil {
			p.CloseSinks()
			return nil, err
		}
		if open {
			p.Sinks = append(p.Sinks, built)
			// A websocket sink without a listen of its own is an endpoint
			// of the [http] server.
			if st, ok := k.Settings.(*config.WebSocketSink); ok && st.Listen == "" {
				if p.HTTPHandlers == nil {
					p.HTTPHandlers = map[string]http.Handler{}
				}
				p.HTTPHandlers[st.Path] = built.Sink.(*websocket.Sink)
			}
		}
	}
	return p, nil
}

// sourceError names the source in a source's error, keeping the one line
// of a *source.UserError (which the CLI prints instead of the chain).
func sourceError(name string, err error) error {
	if ue, ok := errors.AsType[*source.UserError](err); ok {
		return &source.UserError{Msg: fmt.Sprintf("sources.%s: %s", name, ue.Msg), Err: err}
	}
	return fmt.Errorf("sources.%s: %w", name, err)
}

// buildSink builds the sink k; when open is false it runs the same checks
// without opening the sink (Sink.Sink stays nil).
func buildSink(k *config.Sink, databases map[string]string, log *slog.Logger, open bool, httpToken string) (Sink, error) {
	router, err := route.New(k.RouteOptions())
	if err != nil {
		return Sink{}, fmt.Errorf("sinks.%s: %w", k.Name, err)
	}
	var opts encode.Options
	if len(k.Sources) > 0 { // a dead-letter sink has none, and no use for its encoder
		opts = encode.Options{ServerName: k.Sources[0], Database: databases[k.Sources[0]]}
	}
	enc, err := encode.New(k.Format, opts)
	if err != nil {
		return Sink{}, fmt.Errorf("sinks.%s.format: %w", k.Name, err)
	}
	if k.Format == encode.FormatAvro && k.Avro != nil && k.Avro.Wire == config.AvroConfluent {
		if enc, err = confluentEncoder(k.Avro, opts); err != nil {
			return Sink{}, fmt.Errorf("sinks.%s.avro: %w", k.Name, err)
		}
	}
	if k.Format == encode.FormatAvro && k.Type == config.SinkStdout {
		return Sink{}, fmt.Errorf("sinks.%s.format: avro is binary, and %s sinks write one event per line: use json, wal2json, debezium or cloudevents", k.Name, k.Type)
	}
	var s sink.Sink
	switch st := k.Settings.(type) {
	case *config.StdoutSink:
		if open {
			s = stdout.New(nil)
		}
	case *config.DiscardSink:
		if open {
			s = discard.New()
		}
	case *config.FileSink:
		maxBytes := st.RotateBytes
		if maxBytes == 0 {
			maxBytes = -1 // the config's zero means never
		}
		fopts := file.Options{MaxBytes: maxBytes, MaxAge: st.RotateEvery}
		if a, ok := enc.(*encode.Avro); ok {
			// Object container files, one sequence per topic (sink/avrofile).
			if !open {
				if err := file.Check(st.Path, fopts); err != nil {
					return Sink{}, fmt.Errorf("sinks.%s.path: %w", k.Name, err)
				}
				break
			}
			f, err := avrofile.Open(st.Path, a, avrofile.Options{MaxBytes: st.RotateBytes, MaxAge: st.RotateEvery})
			if err != nil {
				return Sink{}, fmt.Errorf("sinks.%s.path: %w", k.Name, err)
			}
			s = f
			break
		}
		if !open {
			if err := file.Check(st.Path, fopts); err != nil {
				return Sink{}, fmt.Errorf("sinks.%s.path: %w", k.Name, err)
			}
			break
		}
		f, err := file.Open(st.Path, fopts)
		if err != nil {
			return Sink{}, fmt.Errorf("sinks.%s.path: %w", k.Name, err)
		}
		s = f
	case *config.KafkaSink:
		if !open {
			break // its settings are the config's to check; connecting is run's
		}
		ks, err := openKafka(k, st)
		if err != nil {
			return Sink{}, fmt.Errorf("sinks.%s: %w", k.Name, err)
		}
		s = ks
	case *config.NATSSink:
		if !open {
			break // its settings are the config's to check; connecting is run's
		}
		if s, err = openNATS(st, log.With("sink", k.Name)); err != nil {
			return Sink{}, fmt.Errorf("sinks.%s: %w", k.Name, err)
		}
	case *config.RedisSink:
		if !open {
			break
		}
		if s, err = openRedis(st, log.With("sink", k.Name)); err != nil {
			return Sink{}, fmt.Errorf("sinks.%s: %w", k.Name, err)
		}
	case *config.WebhookSink:
		var tlsOpts webhook.TLSOptions
		if t := st.TLS; t != nil {
			tlsOpts = webhook.TLSOptions{CAFile: t.CA, CertFile: t.Cert, KeyFile: t.Key, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
		}
		retries := st.Retries
		if retries == 0 {
			retries = -1 // the config's zero means none
		}
		w, err := webhook.New(webhook.Options{
			URL: st.URL, Headers: st.Headers, Format: k.Format, Single: st.Mode == config.WebhookSingle,
			Binary:   st.Mode == config.WebhookBinary,
			MaxBatch: st.MaxBatch, MaxInFlight: st.MaxInFlight, Timeout: st.Timeout, Secret: []byte(st.Secret),
			Retries: retries, MinBackoff: st.MinBackoff, MaxBackoff: st.MaxBackoff, TLS: tlsOpts,
			Logger: log.With("sink", k.Name),
		})
		if err != nil {
			return Sink{}, fmt.Errorf("sinks.%s: %w", k.Name, err)
		}
		if !open {
			_ = w.Close() // built only to check its options
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), ConnectTimeout)
		err = w.Probe(ctx)
		cancel()
		if err != nil {
			_ = w.Close()
			return Sink{}, fmt.Errorf("sinks.%s: %w", k.Name, err)
		}
		s = w
	case *config.WebSocketSink:
		// Clients ack the commit LSN a frame shows: wal2json's per-event
		// frames show none.
		if k.Format == encode.FormatWal2JSON || k.Format == encode.FormatWal2JSON2 {
			return Sink{}, fmt.Errorf("sinks.%s.format: websocket clients ack the commit_lsn of the frames they receive, which wal2json frames do not show: use json, debezium, cloudevents or avro", k.Name)
		}
		if !open {
			break
		}
		ws := websocket.New(websocket.Options{
			Token: httpToken, Binary: k.Format == encode.FormatAvro,
			MaxLagRecords: st.MaxLagRecords, MaxLagBytes: st.MaxLagBytes, AckTimeout: st.AckTimeout,
			Logger: log.With("sink", k.Name),
		})
		if st.Listen != "" {
			if err := ws.Listen(st.Listen, st.Path); err != nil {
				return Sink{}, &source.UserError{Msg: fmt.Sprintf("sinks.%s.listen: %v", k.Name, err), Err: err}
			}
		}
		s = ws
	default:
		return Sink{}, fmt.Errorf("sinks.%s: type %s is not available in this version of pgfeed", k.Name, k.Type)
	}
	return Sink{Name: k.Name, Sources: k.Sources, Sink: s, Router: router, Encoder: enc, Schemas: true, DeadLetter: k.DeadLetter,
		RecordKeys: k.Type == config.SinkKafka}, nil
}

// confluentEncoder returns the Avro encoder of the Confluent wire format
// with its registry client. Nothing connects yet: the first record of each
// schema does, and an unreachable registry holds the sink back (retried)
// rather than failing the start.
func confluentEncoder(a *config.Avro, opts encode.Options) (encode.Encoder, error) {
	ropts := schemaregistry.Options{URL: a.Registry, User: a.User, Password: a.Password, Compatibility: a.Compatibility}
	if a.TLS != nil {
		tc, err := a.TLS.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		ropts.TLS = tc
	}
	reg, err := schemaregistry.New(ropts)
	if err != nil {
		return nil, err
	}
	c, err := encode.NewConfluent(opts, reg, a.SubjectStrategy)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// CloseSinks closes every sink; for a pipeline that will not Run.
func (p *Pipeline) CloseSinks() {
	for _, k := range p.Sinks {
		_ = k.Sink.Close()
	}
}

// ConnectTimeout bounds how long FromConfig waits for a sink's server.
const ConnectTimeout = 30 * time.Second

// buildKafkaSource builds a Kafka source; with open, it checks at once
// that the brokers answer and the topics exist, so that pgfeed stops
// before anything starts (the group is joined by Run).
func buildKafkaSource(name string, ks *config.KafkaSource, open bool) (Source, error) {
	opts := &kafkasource.Options{
		Brokers: ks.Brokers, Topics: ks.Topics, Group: ks.Group,
		SASLMechanism: ks.SASL.Mechanism, SASLUser: ks.SASL.User, SASLPassword: ks.SASL.Password,
		InstanceID: ks.InstanceID, SessionTimeout: ks.SessionTimeout, Format: ks.Format,
	}
	if ks.TLS != nil {
		tc, err := ks.TLS.ClientConfig()
		if err != nil {
			return Source{}, fmt.Errorf("sources.%s.tls: %w", name, err)
		}
		opts.TLS = tc
	}
	if open {
		ctx, cancel := context.WithTimeout(context.Background(), ConnectTimeout)
		err := kafkasource.Check(ctx, *opts)
		cancel()
		if err != nil {
			return Source{}, fmt.Errorf("sources.%s: %w", name, err)
		}
	}
	return Source{Name: name, Kafka: opts}, nil
}

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
	for _, tmpl := range append([]string{k.Route.Default, k.Route.Other}, slices.Collect(maps.Values(k.Route.Tables))...) {
		if tmpl != "" && !strings.Contains(tmpl, "{") {
			opts.Topics = append(opts.Topics, tmpl)
		}
	}
	if st.TLS != nil {
		tc, err := st.TLS.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		opts.TLS = tc
	}
	ctx, cancel := context.WithTimeout(context.Background(), ConnectTimeout)
	defer cancel()
	return kafka.Open(ctx, opts)
}
