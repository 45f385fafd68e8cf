package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgfeed/pgfeed/checkpoint"
	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/route"
	"github.com/pgfeed/pgfeed/sink"
	"github.com/pgfeed/pgfeed/source"
	kafkasource "github.com/pgfeed/pgfeed/source/kafka"
)

// Source is one PostgreSQL database read through one replication slot.
type Source struct {
	Name   string
	Stream source.Config // Transactions and Schemas are turned on by the pipeline
	Retain checkpoint.Retention
	// Snapshot sends every row of the source's tables as read events when
	// its slot is created, read in the slot's exported snapshot.
	Snapshot bool
	// Kafka, when set, makes this a Kafka source: it reads the topics a
	// pgfeed Kafka sink wrote, in a consumer group, and Stream, Retain and
	// Snapshot do not apply.
	Kafka *kafkasource.Options
}

// Sink is one destination: which sources feed it, how events are routed
// and encoded, and the sink itself.
type Sink struct {
	Name    string
	Sources []string
	Sink    sink.Sink
	Router  *route.Router
	Encoder encode.Encoder
	// Schemas passes schema events on to the sink (they are always used to
	// follow the relation's columns).
	Schemas bool
	// RecordKeys gives records the encoder's own keys (encode.KeyEncoder:
	// Debezium's key records) instead of the native JSON key, and adds the
	// encoder's tombstones (encode.Tombstoner: a record with the key and a
	// nil Value after each delete). Kafka sinks want both: compacted topics
	// and Kafka Connect sinks with pk.mode=record_key rely on them.
	RecordKeys bool
	// MaxBatch and MaxBatchBytes bound one Write (defaults 2000 events, 4 MiB).
	MaxBatch      int
	MaxBatchBytes int
	// DeadLetter names the sink (of the same pipeline, with no Sources)
	// that receives this sink's poison records: events that cannot be
	// encoded, and records the sink reports in a *sink.RejectedError. Each
	// goes there in an Envelope, and the sink goes on. Empty: the sink
	// retries a poison record for ever and logs that it is stuck.
	DeadLetter string
	// QueueBatches is how many batches may wait for the sink (default 4).
	// With the batch bounds it caps the memory a slow sink can make the
	// pipeline hold; beyond it the source stops reading from Postgres.
	QueueBatches int
}

// Pipeline wires sources to sinks.
type Pipeline struct {
	Sources []Source
	Sinks   []Sink
	Store   checkpoint.Storage
	Logger  *slog.Logger
	// Backoff bounds the wait between reconnects (defaults 100ms to 10s).
	MinBackoff, MaxBackoff time.Duration
	// HTTPHandlers are endpoints (path → handler) of sinks served on the
	// [http] server: websocket sinks without a listen of their own.
	HTTPHandlers map[string]http.Handler

	stats       sync.Map // sink name → *SinkStats
	deadLetters map[string]*deadLetter
	sources     sync.Map // source name → *sourceRun, while running
}

// SourceStatus is the state of one source.
type SourceStatus struct {
	Name         string    `json:"name"`
	Streaming    bool      `json:"streaming"` // a stream is open (false while reconnecting)
	Confirmed    event.LSN `json:"confirmed_lsn"`
	ServerWALEnd event.LSN `json:"server_wal_end"`
	Events       uint64    `json:"events"`
	Reconnects   uint64    `json:"reconnects"`
	LastError    string    `json:"last_error,omitempty"`
	// Slot is the health of the source's replication slot as last checked
	// (see source.Config.SlotCheckInterval); nil until known.
	Slot *source.Health `json:"slot,omitempty"`
	// SlotWarning says why the slot is at risk of being invalidated, or
	// that it was; empty while it is healthy.
	SlotWarning string `json:"slot_warning,omitempty"`
}

// SlotOK reports whether the source's slot is neither invalidated nor at
// risk of it (true while its health is not known yet).
func (s SourceStatus) SlotOK() bool { return s.Slot == nil || s.Slot.OK() }

// SinkStatus is the state of one sink.
type SinkStatus struct {
	Name           string    `json:"name"`
	Events         uint64    `json:"events"`
	Batches        uint64    `json:"batches"`
	Bytes          uint64    `json:"bytes"`
	Durable        event.LSN `json:"durable_lsn"`
	QueuedBytes    int64     `json:"queued_bytes"`
	MaxQueuedBytes int64     `json:"max_queued_bytes"`
	WriteErrors    uint64    `json:"write_errors"`
	// DeadLettered counts the poison records the sink sent to its
	// dead-letter sink.
	DeadLettered uint64 `json:"dead_lettered"`
}

// Status is a point-in-time view of the pipeline, for the admin API.
type Status struct {
	Sources []SourceStatus `json:"sources"`
	Sinks   []SinkStatus   `json:"sinks"`
}

// Status returns the state of every source and sink. It is safe to call
// while Run runs.
func (p *Pipeline) Status() Status {
	var st Status
	for i := range p.Sources {
		name := p.Sources[i].Name
		ss := SourceStatus{Name: name}
		if v, ok := p.sources.Load(name); ok {
			r := v.(*sourceRun)
			r.mu.Lock()
			if r.stream != nil {
				stats := r.stream.Stats()
				ss.Streaming, ss.Confirmed, ss.ServerWALEnd = true, stats.Confirmed, stats.ServerWALEnd
				ss.Slot, ss.SlotWarning = slotHealth(r.stream)
			}
			ss.Streaming = ss.Streaming || r.consuming
			ss.Events = r.events
			ss.Reconnects = r.reconnects
			if r.lastErr != nil {
				ss.LastError = r.lastErr.Error()
			}
			r.mu.Unlock()
		}
		st.Sources = append(st.Sources, ss)
	}
	for i := range p.Sinks {
		name := p.Sinks[i].Name
		s := p.sinkStats(name)
		st.Sinks = append(st.Sinks, SinkStatus{
			Name: name, Events: s.Events.Load(), Batches: s.Batches.Load(), Bytes: s.Bytes.Load(),
			Durable: event.LSN(s.Durable.Load()), QueuedBytes: s.QueuedBytes.Load(), MaxQueuedBytes: s.MaxQueuedBytes.Load(),
			WriteErrors: s.WriteErrors.Load(), DeadLettered: s.DeadLettered.Load(),
		})
	}
	return st
}

// SinkStats are a sink's counters, safe to read while the pipeline runs.
type SinkStats struct {
	Events          atomic.Uint64 // records written
	Batches         atomic.Uint64
	Bytes           atomic.Uint64 // encoded bytes written
	QueuedBytes     atomic.Int64  // estimated bytes of events waiting for this sink
	MaxQueuedBytes  atomic.Int64  // high-water mark of QueuedBytes
	Durable         atomic.Uint64 // position made durable (an LSN)
	WriteErrors     atomic.Uint64
	SkippedReplayed atomic.Uint64 // events at or before the sink's checkpoint, skipped after a restart
	DeadLettered    atomic.Uint64 // poison records sent to the dead-letter sink
}

// Stats returns the counters of the named sink (zero before it starts).
func (p *Pipeline) Stats(sinkName string) *SinkStats { return p.sinkStats(sinkName) }

func (p *Pipeline) validate() error {
	if p.Store == nil {
		return errors.New("pipeline: no checkpoint store")
	}
	names := map[string]bool{}
	for _, s := range p.Sources {
		if names[s.Name] {
			return fmt.Errorf("pipeline: duplicate source %q", s.Name)
		}
		names[s.Name] = true
	}
	sinks := map[string]*Sink{}
	for i := range p.Sinks {
		sinks[p.Sinks[i].Name] = &p.Sinks[i]
	}
	deadLetters := map[string]bool{}
	for _, k := range p.Sinks {
		if k.DeadLetter == "" {
			continue
		}
		dl := sinks[k.DeadLetter]
		switch {
		case dl == nil || k.DeadLetter == k.Name:
			return fmt.Errorf("pipeline: dead-letter sink %q of sink %q is not another sink of the pipeline", k.DeadLetter, k.Name)
		case len(dl.Sources) > 0 || dl.DeadLetter != "":
			return fmt.Errorf("pipeline: dead-letter sink %q of sink %q must have no sources and no dead letter of its own", k.DeadLetter, k.Name)
		}
		deadLetters[k.DeadLetter] = true
	}
	for _, k := range p.Sinks {
		if len(k.Sources) == 0 && !deadLetters[k.Name] {
			return fmt.Errorf("pipeline: sink %q has no source", k.Name)
		}
		for _, s := range k.Sources {
			if !names[s] {
				return fmt.Errorf("pipeline: sink %q reads unknown source %q", k.Name, s)
			}
		}
		if k.Sink == nil || k.Encoder == nil || k.Router == nil {
			return fmt.Errorf("pipeline: sink %q is missing its sink, encoder or router", k.Name)
		}
	}
	return nil
}

// Run runs every source and sink until ctx is cancelled (a clean stop:
// queued events are written and acked, and Run returns nil) or a source
// fails in a way retrying cannot fix.
func (p *Pipeline) Run(ctx context.Context) error {
	if err := p.validate(); err != nil {
		return err
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	if p.MinBackoff <= 0 {
		p.MinBackoff = 100 * time.Millisecond
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = 10 * time.Second
	}
	// Defaults are set here, before any goroutine starts: Status reads the
	// sinks while the pipeline runs.
	for i := range p.Sinks {
		k := &p.Sinks[i]
		if k.MaxBatch <= 0 {
			k.MaxBatch = 2000
		}
		if k.MaxBatchBytes <= 0 {
			k.MaxBatchBytes = 4 << 20
		}
		if k.QueueBatches <= 0 {
			k.QueueBatches = 4
		}
	}
	p.deadLetters = map[string]*deadLetter{}
	for i := range p.Sinks {
		if name := p.Sinks[i].DeadLetter; name != "" && p.deadLetters[name] == nil {
			for j := range p.Sinks {
				if p.Sinks[j].Name == name {
					p.deadLetters[name] = &deadLetter{k: &p.Sinks[j], stats: p.sinkStats(name)}
				}
			}
		}
	}
	errs := make(chan error, len(p.Sources))
	for i := range p.Sources {
		src := &p.Sources[i]
		var sinks []*Sink
		for j := range p.Sinks {
			for _, s := range p.Sinks[j].Sources {
				if s == src.Name {
					sinks = append(sinks, &p.Sinks[j])
				}
			}
		}
		go func() { errs <- p.runSource(ctx, src, sinks) }()
	}
	var first error
	for range p.Sources {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	for i := range p.Sinks {
		if err := p.Sinks[i].Sink.Close(); err != nil && first == nil {
			first = fmt.Errorf("closing sink %s: %w", p.Sinks[i].Name, err)
		}
	}
	return first
}

// sinkStats returns (creating) the counters of a sink.
func (p *Pipeline) sinkStats(name string) *SinkStats {
	v, _ := p.stats.LoadOrStore(name, &SinkStats{})
	return v.(*SinkStats)
}

// eventBytes estimates the memory an event holds.
func eventBytes(e *event.Event) int64 {
	n := int64(160)
	for _, v := range e.Before {
		n += int64(len(v.Raw)) + 24
	}
	for _, v := range e.After {
		n += int64(len(v.Raw)) + 24
	}
	if e.Message != nil {
		n += int64(len(e.Message.Content))
	}
	return n
}
