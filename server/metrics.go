package server

import (
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/pipeline"
	"github.com/prometheus/client_golang/prometheus"
)

// statusCollector turns one Status snapshot per scrape into metrics. It
// reads the pipeline's own counters instead of keeping prometheus counters
// beside them, so the two can never disagree and the hot path pays nothing
// for metrics.
type statusCollector struct {
	status func() pipeline.Status

	srcStreaming, srcEvents, srcReconnects, srcConfirmed, srcWALEnd, srcLag *prometheus.Desc

	sinkEvents, sinkBytes, sinkBatches, sinkWriteErrors, sinkDeadLetters, sinkQueued, sinkQueuedMax, sinkDurable *prometheus.Desc
}

func newStatusCollector(status func() pipeline.Status) *statusCollector {
	src := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("pgfeed_source_"+name, help, []string{"source"}, nil)
	}
	sink := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("pgfeed_sink_"+name, help, []string{"sink"}, nil)
	}
	return &statusCollector{
		status:        status,
		srcStreaming:  src("streaming", "1 when the source has an open replication stream, 0 while it connects or reconnects."),
		srcEvents:     src("events_total", "Change events read from the source's replication slot."),
		srcReconnects: src("reconnects_total", "Times the source reopened its replication stream after an error."),
		srcConfirmed:  src("confirmed_lsn", "Position confirmed to PostgreSQL as flushed (every sink has made it durable), as a WAL byte position. Absent until known."),
		srcWALEnd:     src("server_wal_end_lsn", "Latest end of WAL reported by the server, as a WAL byte position. Absent until known."),
		srcLag:        src("lag_bytes", "Bytes of WAL between the server's WAL end and the confirmed position: what the slot makes PostgreSQL retain beyond pgfeed's progress. Absent until both are known."),

		sinkEvents:      sink("events_total", "Events written to the sink."),
		sinkBytes:       sink("bytes_total", "Encoded bytes written to the sink."),
		sinkBatches:     sink("batches_total", "Batches written to the sink."),
		sinkWriteErrors: sink("write_errors_total", "Failed writes to the sink (each is retried)."),
		sinkDeadLetters: sink("dead_letters_total", "Poison records (not encodable, or refused for good by the destination) the sink sent to its dead-letter sink."),
		sinkQueued:      sink("queued_bytes", "Estimated bytes of events waiting for the sink."),
		sinkQueuedMax:   sink("queued_bytes_max", "Highest queued_bytes seen since the start."),
		sinkDurable:     sink("durable_lsn", "Position the sink has made durable, as a WAL byte position. Absent until the sink has made anything durable."),
	}
}

// Describe sends the fixed descriptors, so the registry checks names and
// labels once at registration.
func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.srcStreaming, c.srcEvents, c.srcReconnects, c.srcConfirmed, c.srcWALEnd, c.srcLag,
		c.sinkEvents, c.sinkBytes, c.sinkBatches, c.sinkWriteErrors, c.sinkDeadLetters, c.sinkQueued, c.sinkQueuedMax, c.sinkDurable,
	} {
		ch <- d
	}
}

// Collect reads one Status, so every series of a scrape comes from the same
// instant.
func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	for _, s := range st.Sources {
		streaming := 0.0
		if s.Streaming {
			streaming = 1
		}
		emit(ch, c.srcStreaming, prometheus.GaugeValue, streaming, s.Name)
		emit(ch, c.srcEvents, prometheus.CounterValue, float64(s.Events), s.Name)
		emit(ch, c.srcReconnects, prometheus.CounterValue, float64(s.Reconnects), s.Name)
		// A zero LSN means "not known" (no stream open): a series that
		// dropped to 0 would read as a huge regression on a graph, so the
		// series is left out instead.
		if s.Confirmed != 0 {
			emit(ch, c.srcConfirmed, prometheus.GaugeValue, lsnValue(s.Confirmed), s.Name)
		}
		if s.ServerWALEnd != 0 {
			emit(ch, c.srcWALEnd, prometheus.GaugeValue, lsnValue(s.ServerWALEnd), s.Name)
		}
		if s.Confirmed != 0 && s.ServerWALEnd != 0 {
			// The confirmed position can pass the last WAL end the server
			// reported (the keepalive carrying it is older than the ack).
			lag := uint64(0)
			if s.ServerWALEnd > s.Confirmed {
				lag = uint64(s.ServerWALEnd - s.Confirmed)
			}
			emit(ch, c.srcLag, prometheus.GaugeValue, float64(lag), s.Name)
		}
	}
	for _, k := range st.Sinks {
		emit(ch, c.sinkEvents, prometheus.CounterValue, float64(k.Events), k.Name)
		emit(ch, c.sinkBytes, prometheus.CounterValue, float64(k.Bytes), k.Name)
		emit(ch, c.sinkBatches, prometheus.CounterValue, float64(k.Batches), k.Name)
		emit(ch, c.sinkWriteErrors, prometheus.CounterValue, float64(k.WriteErrors), k.Name)
		emit(ch, c.sinkDeadLetters, prometheus.CounterValue, float64(k.DeadLettered), k.Name)
		emit(ch, c.sinkQueued, prometheus.GaugeValue, float64(k.QueuedBytes), k.Name)
		emit(ch, c.sinkQueuedMax, prometheus.GaugeValue, float64(k.MaxQueuedBytes), k.Name)
		if k.Durable != 0 {
			emit(ch, c.sinkDurable, prometheus.GaugeValue, lsnValue(k.Durable), k.Name)
		}
	}
}

// emit sends one sample. NewConstMetric fails only on a label value that
// is not valid UTF-8; the scrape then reports that error instead of the
// process panicking.
func emit(ch chan<- prometheus.Metric, d *prometheus.Desc, typ prometheus.ValueType, v float64, label string) {
	m, err := prometheus.NewConstMetric(d, typ, v, label)
	if err != nil {
		m = prometheus.NewInvalidMetric(d, err)
	}
	ch <- m
}

// lsnValue is an LSN as a sample value. A float64 holds it exactly up to
// 2^53 bytes of WAL (8 PiB), far beyond any real cluster's position.
func lsnValue(l event.LSN) float64 { return float64(l) }
