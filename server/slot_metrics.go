package server

import (
	"github.com/pgfeed/pgfeed/pipeline"
	"github.com/prometheus/client_golang/prometheus"
)

// walStatuses are the values of pg_replication_slots.wal_status: each is a
// series of pgfeed_slot_wal_status, 1 for the slot's current one, so that an
// alert can match on the label.
var walStatuses = []string{"reserved", "extended", "unreserved", "lost"}

// slotCollector exports the health of each source's replication slot, as
// the source last read it. A source whose health is not known yet (no
// stream open) has no slot series.
type slotCollector struct {
	status func() pipeline.Status

	walStatus, safeWAL, retained, keepSize, atRisk, invalidated, inactive *prometheus.Desc

	spillTxns, spillCount, spillBytes, streamTxns, streamCount, streamBytes, totalTxns, totalBytes *prometheus.Desc
}

func newSlotCollector(status func() pipeline.Status) *slotCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("pgfeed_slot_"+name, help, append([]string{"source", "slot"}, labels...), nil)
	}
	return &slotCollector{
		status:      status,
		walStatus:   d("wal_status", "1 for the slot's wal_status (reserved, extended, unreserved, lost), 0 for the others.", "status"),
		safeWAL:     d("safe_wal_size_bytes", "Bytes of WAL that can be written before max_slot_wal_keep_size invalidates the slot (negative once beyond it). Absent when no limit is set."),
		retained:    d("retained_wal_bytes", "WAL the slot makes PostgreSQL keep: current WAL position minus the slot's restart_lsn."),
		keepSize:    d("max_slot_wal_keep_size_bytes", "The server's max_slot_wal_keep_size. Absent when unlimited."),
		atRisk:      d("at_risk", "1 when the slot is close to being invalidated (unreserved WAL, little safe_wal_size left, or idle near idle_replication_slot_timeout)."),
		invalidated: d("invalidated", "1 when PostgreSQL invalidated the slot; reason is invalidation_reason (PostgreSQL 16+) or wal_removed.", "reason"),
		inactive:    d("inactive_seconds", "How long the slot has been inactive (PostgreSQL 17+). Absent while it is active."),
		spillTxns:   d("spill_txns_total", "Transactions decoding spilled to disk (pg_stat_replication_slots, PostgreSQL 14+)."),
		spillCount:  d("spill_count_total", "Times decoding spilled transactions to disk."),
		spillBytes:  d("spill_bytes_total", "Bytes of decoded transactions spilled to disk."),
		streamTxns:  d("stream_txns_total", "In-progress transactions streamed to pgfeed (protocol v2)."),
		streamCount: d("stream_count_total", "Times in-progress transactions were streamed."),
		streamBytes: d("stream_bytes_total", "Bytes of in-progress transactions streamed."),
		totalTxns:   d("decoded_txns_total", "Transactions decoded and sent (pg_stat_replication_slots.total_txns)."),
		totalBytes:  d("decoded_bytes_total", "Bytes of transactions decoded and sent (pg_stat_replication_slots.total_bytes)."),
	}
}

func (c *slotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.walStatus, c.safeWAL, c.retained, c.keepSize, c.atRisk, c.invalidated, c.inactive,
		c.spillTxns, c.spillCount, c.spillBytes, c.streamTxns, c.streamCount, c.streamBytes, c.totalTxns, c.totalBytes,
	} {
		ch <- d
	}
}

func (c *slotCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.status().Sources {
		h := s.Slot
		if h == nil || !h.Exists {
			continue
		}
		send := func(d *prometheus.Desc, typ prometheus.ValueType, v float64, extra ...string) {
			m, err := prometheus.NewConstMetric(d, typ, v, append([]string{s.Name, h.Slot}, extra...)...)
			if err != nil {
				m = prometheus.NewInvalidMetric(d, err)
			}
			ch <- m
		}
		if h.WALStatus != "" {
			for _, st := range walStatuses {
				send(c.walStatus, prometheus.GaugeValue, boolValue(h.WALStatus == st), st)
			}
		}
		if h.SafeWALSize != nil {
			send(c.safeWAL, prometheus.GaugeValue, float64(*h.SafeWALSize))
		}
		send(c.retained, prometheus.GaugeValue, float64(h.RetainedBytes))
		if h.MaxSlotWALKeepSize >= 0 {
			send(c.keepSize, prometheus.GaugeValue, float64(h.MaxSlotWALKeepSize))
		}
		send(c.atRisk, prometheus.GaugeValue, boolValue(h.AtRisk()))
		reason := h.InvalidationReason
		if reason == "" && h.Invalidated() {
			reason = "wal_removed" // PostgreSQL 14 and 15 say only wal_status lost
		}
		send(c.invalidated, prometheus.GaugeValue, boolValue(h.Invalidated()), reason)
		if h.InactiveSince != nil {
			send(c.inactive, prometheus.GaugeValue, h.InactiveFor.Seconds())
		}
		if st := h.Stats; st != nil {
			send(c.spillTxns, prometheus.CounterValue, float64(st.SpillTxns))
			send(c.spillCount, prometheus.CounterValue, float64(st.SpillCount))
			send(c.spillBytes, prometheus.CounterValue, float64(st.SpillBytes))
			send(c.streamTxns, prometheus.CounterValue, float64(st.StreamTxns))
			send(c.streamCount, prometheus.CounterValue, float64(st.StreamCount))
			send(c.streamBytes, prometheus.CounterValue, float64(st.StreamBytes))
			send(c.totalTxns, prometheus.CounterValue, float64(st.TotalTxns))
			send(c.totalBytes, prometheus.CounterValue, float64(st.TotalBytes))
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
