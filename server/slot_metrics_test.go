package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pgfeed/pgfeed/pipeline"
	"github.com/pgfeed/pgfeed/source"
	dto "github.com/prometheus/client_model/go"
)

// slotStatus is a streaming source whose slot is beyond
// max_slot_wal_keep_size: the next checkpoint invalidates it.
func slotStatus(t *testing.T) pipeline.Status {
	safe := int64(-4096)
	h := &source.Health{
		Slot: "main_slot", Exists: true, Active: true, WALStatus: "unreserved", SafeWALSize: &safe,
		RetainedBytes: 3 << 20, MaxSlotWALKeepSize: 1 << 20, ServerVersion: 170000,
		Stats: &source.SlotStats{SpillTxns: 2, SpillCount: 3, SpillBytes: 4096, StreamTxns: 5, StreamCount: 6, StreamBytes: 8192, TotalTxns: 70, TotalBytes: 1 << 16},
	}
	st := streamingStatus(t)
	st.Sources[0].Slot, st.Sources[0].SlotWarning = h, h.Warning()
	return st
}

func TestSlotHealthMakesStatusNotReady(t *testing.T) {
	st := slotStatus(t)
	h := newTestAdmin(t, func() pipeline.Status { return st })
	rec := get(t, h, "GET", "/status")
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("/status of a slot at risk: %d, want 503", rec.Code)
	}
	doc := decodeJSON(t, rec.Body.String())
	src := doc["sources"].([]any)[0].(map[string]any)
	slot, _ := src["slot"].(map[string]any)
	if doc["ok"] != false || slot["wal_status"] != "unreserved" || slot["retained_wal_bytes"] != float64(3<<20) || slot["safe_wal_size"] != float64(-4096) {
		t.Errorf("/status: %s", rec.Body.String())
	}
	if w, _ := src["slot_warning"].(string); !strings.Contains(w, "next checkpoint invalidates it") {
		t.Errorf("slot_warning %q", w)
	}
	// A healthy slot keeps the instance ready.
	st.Sources[0].Slot.WALStatus, st.Sources[0].SlotWarning = "reserved", ""
	st.Sources[0].Slot.SafeWALSize = nil
	if rec := get(t, h, "GET", "/status"); rec.Code != http.StatusOK {
		t.Errorf("/status of a healthy slot: %d %s", rec.Code, rec.Body.String())
	}
}

func TestSlotMetrics(t *testing.T) {
	st := slotStatus(t)
	srv := httptest.NewServer(newTestAdmin(t, func() pipeline.Status { return st }))
	defer srv.Close()
	families := scrape(t, srv.URL)
	counter, gauge := dto.MetricType_COUNTER, dto.MetricType_GAUGE
	for _, tt := range []struct {
		name         string
		typ          dto.MetricType
		label, value string
		want         float64
	}{
		{"pgfeed_slot_wal_status", gauge, "status", "unreserved", 1},
		{"pgfeed_slot_wal_status", gauge, "status", "reserved", 0},
		{"pgfeed_slot_safe_wal_size_bytes", gauge, "slot", "main_slot", -4096},
		{"pgfeed_slot_retained_wal_bytes", gauge, "source", "main", 3 << 20},
		{"pgfeed_slot_max_slot_wal_keep_size_bytes", gauge, "source", "main", 1 << 20},
		{"pgfeed_slot_at_risk", gauge, "source", "main", 1},
		{"pgfeed_slot_invalidated", gauge, "source", "main", 0},
		{"pgfeed_slot_spill_txns_total", counter, "source", "main", 2},
		{"pgfeed_slot_spill_count_total", counter, "source", "main", 3},
		{"pgfeed_slot_spill_bytes_total", counter, "source", "main", 4096},
		{"pgfeed_slot_stream_txns_total", counter, "source", "main", 5},
		{"pgfeed_slot_stream_count_total", counter, "source", "main", 6},
		{"pgfeed_slot_stream_bytes_total", counter, "source", "main", 8192},
		{"pgfeed_slot_decoded_txns_total", counter, "source", "main", 70},
		{"pgfeed_slot_decoded_bytes_total", counter, "source", "main", 1 << 16},
	} {
		got, ok := sample(t, families, tt.name, tt.typ, tt.label, tt.value)
		if !ok || got != tt.want {
			t.Errorf("%s{%s=%q} = %v (present %v), want %v", tt.name, tt.label, tt.value, got, ok, tt.want)
		}
	}
	if families["pgfeed_slot_inactive_seconds"] != nil {
		t.Errorf("an active slot has pgfeed_slot_inactive_seconds")
	}

	// Invalidated: the reason is a label; PostgreSQL 14 and 15 give none.
	h := st.Sources[0].Slot
	h.WALStatus, h.SafeWALSize = "lost", nil
	families = scrape(t, srv.URL)
	if got, ok := sample(t, families, "pgfeed_slot_invalidated", gauge, "reason", "wal_removed"); !ok || got != 1 {
		t.Errorf("pgfeed_slot_invalidated{reason=wal_removed} = %v (present %v), want 1", got, ok)
	}
}
