package server

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/pipeline"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func lsn(t *testing.T, s string) event.LSN {
	t.Helper()
	l, err := event.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// streamingStatus is a pipeline with one streaming source and one sink.
func streamingStatus(t *testing.T) pipeline.Status {
	return pipeline.Status{
		Sources: []pipeline.SourceStatus{{
			Name: "main", Streaming: true, Confirmed: lsn(t, "0/16B3748"), ServerWALEnd: lsn(t, "0/16B3800"),
			Events: 42, Reconnects: 1,
		}},
		Sinks: []pipeline.SinkStatus{{
			Name: "out", Events: 40, Batches: 3, Bytes: 4096, Durable: lsn(t, "0/16B3700"),
			QueuedBytes: 128, MaxQueuedBytes: 512, WriteErrors: 2, DeadLettered: 5,
		}},
	}
}

// reconnectingStatus adds a second source that lost its stream.
func reconnectingStatus(t *testing.T) pipeline.Status {
	st := streamingStatus(t)
	st.Sources = append(st.Sources, pipeline.SourceStatus{Name: "other", Reconnects: 3, LastError: "connection refused"})
	return st
}

func newTestAdmin(t *testing.T, status func() pipeline.Status) http.Handler {
	t.Helper()
	h, err := NewAdmin(status, AdminOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func get(t *testing.T, h http.Handler, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec
}

func decodeJSON(t *testing.T, body string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, body)
	}
	return m
}

func TestAdminEndpoints(t *testing.T) {
	streaming, reconnecting := streamingStatus(t), reconnectingStatus(t)
	tests := []struct {
		name        string
		status      pipeline.Status
		method      string
		path        string
		code        int
		contentType string
		check       func(t *testing.T, body string)
	}{
		{
			name: "health", status: reconnecting, method: "GET", path: "/health",
			code: 200, contentType: "text/plain; charset=utf-8",
			check: func(t *testing.T, body string) {
				if body != "ok\n" {
					t.Errorf("body %q, want \"ok\\n\"", body)
				}
			},
		},
		{
			name: "status when every source streams", status: streaming, method: "GET", path: "/status",
			code: 200, contentType: "application/json",
			check: func(t *testing.T, body string) {
				m := decodeJSON(t, body)
				if m["ok"] != true {
					t.Errorf("ok = %v, want true", m["ok"])
				}
				src := m["sources"].([]any)[0].(map[string]any)
				want := map[string]any{"name": "main", "streaming": true, "confirmed_lsn": "0/16B3748",
					"server_wal_end": "0/16B3800", "events": 42.0, "reconnects": 1.0}
				for k, v := range want {
					if src[k] != v {
						t.Errorf("sources[0].%s = %v, want %v", k, src[k], v)
					}
				}
				if _, ok := src["last_error"]; ok {
					t.Errorf("sources[0].last_error present without an error: %v", src)
				}
				sink := m["sinks"].([]any)[0].(map[string]any)
				want = map[string]any{"name": "out", "events": 40.0, "batches": 3.0, "bytes": 4096.0,
					"durable_lsn": "0/16B3700", "queued_bytes": 128.0, "max_queued_bytes": 512.0, "write_errors": 2.0,
					"dead_lettered": 5.0}
				for k, v := range want {
					if sink[k] != v {
						t.Errorf("sinks[0].%s = %v, want %v", k, sink[k], v)
					}
				}
			},
		},
		{
			name: "status while a source reconnects", status: reconnecting, method: "GET", path: "/status",
			code: 503, contentType: "application/json",
			check: func(t *testing.T, body string) {
				m := decodeJSON(t, body)
				if m["ok"] != false {
					t.Errorf("ok = %v, want false", m["ok"])
				}
				src := m["sources"].([]any)[1].(map[string]any)
				if src["name"] != "other" || src["streaming"] != false || src["last_error"] != "connection refused" {
					t.Errorf("sources[1] = %v", src)
				}
			},
		},
		{
			name: "stats stays 200 while a source reconnects", status: reconnecting, method: "GET", path: "/stats",
			code: 200, contentType: "application/json",
			check: func(t *testing.T, body string) {
				m := decodeJSON(t, body)
				if m["ok"] != false || len(m["sources"].([]any)) != 2 || len(m["sinks"].([]any)) != 1 {
					t.Errorf("stats = %v", m)
				}
			},
		},
		{
			name: "empty status has lists, not null", status: pipeline.Status{}, method: "GET", path: "/stats",
			code: 200, contentType: "application/json",
			check: func(t *testing.T, body string) {
				if !strings.Contains(body, `"sources":[]`) || !strings.Contains(body, `"sinks":[]`) {
					t.Errorf("body %s", body)
				}
			},
		},
		{
			name: "HEAD is allowed", status: streaming, method: "HEAD", path: "/status",
			code: 200, contentType: "application/json",
			check: func(t *testing.T, body string) {},
		},
		{
			name: "POST is not allowed", status: streaming, method: "POST", path: "/status",
			code: 405, contentType: "application/json",
			check: func(t *testing.T, body string) {
				checkOneLineError(t, body, "method POST not allowed on /status")
			},
		},
		{
			name: "DELETE on metrics is not allowed", status: streaming, method: "DELETE", path: "/metrics",
			code: 405, contentType: "application/json",
			check: func(t *testing.T, body string) {
				checkOneLineError(t, body, "method DELETE not allowed on /metrics")
			},
		},
		{
			name: "unknown path", status: streaming, method: "GET", path: "/nope",
			code: 404, contentType: "application/json",
			check: func(t *testing.T, body string) {
				checkOneLineError(t, body, `no such endpoint "/nope"`)
			},
		},
		{
			name: "paths match exactly", status: streaming, method: "GET", path: "/status/",
			code: 404, contentType: "application/json",
			check: func(t *testing.T, body string) {
				checkOneLineError(t, body, "no such endpoint")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newTestAdmin(t, func() pipeline.Status { return tt.status })
			rec := get(t, h, tt.method, tt.path)
			if rec.Code != tt.code {
				t.Errorf("%s %s: code %d, want %d; body %s", tt.method, tt.path, rec.Code, tt.code, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != tt.contentType {
				t.Errorf("Content-Type %q, want %q", ct, tt.contentType)
			}
			if tt.code == 405 && rec.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow %q, want \"GET, HEAD\"", rec.Header().Get("Allow"))
			}
			tt.check(t, rec.Body.String())
		})
	}
}

func checkOneLineError(t *testing.T, body, fragment string) {
	t.Helper()
	if strings.Count(body, "\n") != 1 || !strings.HasSuffix(body, "\n") {
		t.Errorf("error body is not one line: %q", body)
	}
	m := decodeJSON(t, body)
	msg, _ := m["error"].(string)
	if len(m) != 1 || !strings.Contains(msg, fragment) {
		t.Errorf("error body %q, want {\"error\": ...%s...}", body, fragment)
	}
}

// scrape GETs /metrics through a real server and parses the text format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("/metrics: %s\n%s", resp.Status, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("/metrics Content-Type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return families
}

// sample returns the value of the series name{label=value}, and whether it
// exists, checking the family's type.
func sample(t *testing.T, families map[string]*dto.MetricFamily, name string, typ dto.MetricType, label, value string) (float64, bool) {
	t.Helper()
	mf := families[name]
	if mf == nil {
		return 0, false
	}
	if mf.GetType() != typ {
		t.Errorf("%s is a %s, want a %s", name, mf.GetType(), typ)
	}
	if mf.GetHelp() == "" {
		t.Errorf("%s has no help text", name)
	}
	for _, m := range mf.GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == label && lp.GetValue() == value {
				switch typ {
				case dto.MetricType_COUNTER:
					return m.GetCounter().GetValue(), true
				default:
					return m.GetGauge().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

func TestMetrics(t *testing.T) {
	st := reconnectingStatus(t)
	srv := httptest.NewServer(newTestAdmin(t, func() pipeline.Status { return st }))
	defer srv.Close()
	families := scrape(t, srv.URL)

	counter, gauge := dto.MetricType_COUNTER, dto.MetricType_GAUGE
	tests := []struct {
		name         string
		typ          dto.MetricType
		label, value string
		want         float64
		absent       bool
	}{
		{"pgfeed_source_streaming", gauge, "source", "main", 1, false},
		{"pgfeed_source_streaming", gauge, "source", "other", 0, false},
		{"pgfeed_source_events_total", counter, "source", "main", 42, false},
		{"pgfeed_source_reconnects_total", counter, "source", "main", 1, false},
		{"pgfeed_source_reconnects_total", counter, "source", "other", 3, false},
		{"pgfeed_source_confirmed_lsn", gauge, "source", "main", 0x16B3748, false},
		{"pgfeed_source_server_wal_end_lsn", gauge, "source", "main", 0x16B3800, false},
		{"pgfeed_source_lag_bytes", gauge, "source", "main", 0x16B3800 - 0x16B3748, false},
		// A source without a stream has no known position: no series
		// rather than a drop to zero.
		{"pgfeed_source_confirmed_lsn", gauge, "source", "other", 0, true},
		{"pgfeed_source_lag_bytes", gauge, "source", "other", 0, true},
		{"pgfeed_sink_events_total", counter, "sink", "out", 40, false},
		{"pgfeed_sink_bytes_total", counter, "sink", "out", 4096, false},
		{"pgfeed_sink_batches_total", counter, "sink", "out", 3, false},
		{"pgfeed_sink_write_errors_total", counter, "sink", "out", 2, false},
		{"pgfeed_sink_dead_letters_total", counter, "sink", "out", 5, false},
		{"pgfeed_sink_queued_bytes", gauge, "sink", "out", 128, false},
		{"pgfeed_sink_queued_bytes_max", gauge, "sink", "out", 512, false},
		{"pgfeed_sink_durable_lsn", gauge, "sink", "out", 0x16B3700, false},
	}
	for _, tt := range tests {
		got, ok := sample(t, families, tt.name, tt.typ, tt.label, tt.value)
		switch {
		case tt.absent && ok:
			t.Errorf("%s{%s=%q} = %v, want no series", tt.name, tt.label, tt.value, got)
		case !tt.absent && !ok:
			t.Errorf("%s{%s=%q} missing", tt.name, tt.label, tt.value)
		case !tt.absent && got != tt.want:
			t.Errorf("%s{%s=%q} = %v, want %v", tt.name, tt.label, tt.value, got, tt.want)
		}
	}
	// The Go runtime and process collectors are registered too.
	for _, name := range []string{"go_goroutines", "process_start_time_seconds"} {
		if families[name] == nil {
			t.Errorf("%s missing from /metrics", name)
		}
	}
}

// The lag is never negative: the confirmed position may pass the WAL end of
// the last keepalive.
func TestMetricsLagClampsAtZero(t *testing.T) {
	st := pipeline.Status{Sources: []pipeline.SourceStatus{{
		Name: "main", Streaming: true, Confirmed: lsn(t, "0/2000"), ServerWALEnd: lsn(t, "0/1000"),
	}}}
	srv := httptest.NewServer(newTestAdmin(t, func() pipeline.Status { return st }))
	defer srv.Close()
	got, ok := sample(t, scrape(t, srv.URL), "pgfeed_source_lag_bytes", dto.MetricType_GAUGE, "source", "main")
	if !ok || got != 0 {
		t.Errorf("pgfeed_source_lag_bytes = %v (present %v), want 0", got, ok)
	}
}

// Each scrape reads the status again: the metrics move with the pipeline.
func TestMetricsReadStatusAtScrapeTime(t *testing.T) {
	var events atomic.Uint64
	status := func() pipeline.Status {
		return pipeline.Status{Sources: []pipeline.SourceStatus{{Name: "main", Streaming: true, Events: events.Load()}}}
	}
	srv := httptest.NewServer(newTestAdmin(t, status))
	defer srv.Close()
	for _, n := range []uint64{5, 17} {
		events.Store(n)
		got, _ := sample(t, scrape(t, srv.URL), "pgfeed_source_events_total", dto.MetricType_COUNTER, "source", "main")
		if got != float64(n) {
			t.Errorf("after %d events: pgfeed_source_events_total = %v", n, got)
		}
	}
}

// Two admin handlers in one process do not collide: each has its own
// registry, never the global one.
func TestAdminsHaveTheirOwnRegistry(t *testing.T) {
	a := newTestAdmin(t, func() pipeline.Status { return streamingStatus(t) })
	b := newTestAdmin(t, func() pipeline.Status {
		return pipeline.Status{Sources: []pipeline.SourceStatus{{Name: "b"}}}
	})
	for _, tt := range []struct {
		h          http.Handler
		has, hasnt string
	}{
		{a, `source="main"`, `source="b"`},
		{b, `source="b"`, `source="main"`},
	} {
		body := get(t, tt.h, "GET", "/metrics").Body.String()
		if !strings.Contains(body, tt.has) || strings.Contains(body, tt.hasnt) {
			t.Errorf("metrics mix two admins' series:\n%s", body)
		}
	}
}

// Without a token /debug/ is served on a loopback listener only; with one,
// only to a request that carries it.
func TestAdminDebugAuth(t *testing.T) {
	var lv slog.LevelVar
	lv.Set(slog.LevelWarn)
	for _, tc := range []struct {
		name     string
		token    string
		loopback bool
		header   string
		want     int
	}{
		{"loopback, no token", "", true, "", 200},
		{"not loopback, no token", "", false, "", 403},
		{"token, none sent", "t0k", true, "", 401},
		{"token, wrong", "t0k", false, "Bearer nope", 401},
		{"token, not bearer", "t0k", false, "t0k", 401},
		{"token, right", "t0k", false, "Bearer t0k", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := NewAdmin(func() pipeline.Status { return streamingStatus(t) }, AdminOptions{Level: &lv, Token: tc.token, Loopback: tc.loopback})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{"/debug/on", "/debug/off"} {
				rec := httptest.NewRecorder()
				req := httptest.NewRequest(http.MethodPost, p, nil)
				if tc.header != "" {
					req.Header.Set("Authorization", tc.header)
				}
				h.ServeHTTP(rec, req)
				if rec.Code != tc.want {
					t.Errorf("POST %s: %d %s, want %d", p, rec.Code, rec.Body, tc.want)
				}
				if tc.want != 200 {
					decodeJSON(t, rec.Body.String())
				}
			}
			if lv.Level() != slog.LevelWarn {
				t.Errorf("level %v after on and off, want the level NewAdmin saw (WARN)", lv.Level())
			}
		})
	}
	for addr, want := range map[string]bool{"127.0.0.1:80": true, "[::1]:1": true, "localhost:9": true, "0.0.0.0:80": false, "[::]:1": false, "10.1.2.3:4": false} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v", addr, got)
		}
	}
}
