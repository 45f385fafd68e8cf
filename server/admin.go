package server

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/pgfeed/pgfeed/pipeline"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminOptions configures NewAdmin. The zero value is ready to use.
type AdminOptions struct {
	// Logger receives errors met while gathering metrics or writing a
	// response; nil discards them.
	Logger *slog.Logger
}

// NewAdmin returns the handler of the admin API. status is called once per
// request (and once per scrape) and must be safe to call concurrently, as
// (*pipeline.Pipeline).Status is.
//
// Every endpoint answers GET and HEAD; any other method gets 405, and an
// unknown path 404, each with a one-line JSON body {"error": "..."}.
//
//   - /health: 200 "ok" as long as the process serves HTTP (liveness).
//   - /status: the Status as JSON plus "ok", which is true when every source
//     is streaming and no slot is invalidated or at risk of it; 200 when ok,
//     else 503 (readiness: a source that is reconnecting, or whose slot is
//     about to be invalidated, makes the instance not ready).
//   - /stats: the same JSON, always 200, for dashboards and scripts that
//     want the counters whatever the state. It carries "ok" too, so that a
//     reader of either endpoint sees the same document.
//   - /metrics: Prometheus text format, from a registry of its own (never
//     the global default one) holding the pipeline's metrics, computed at
//     scrape time, and the Go runtime and process collectors.
func NewAdmin(status func() pipeline.Status, opts AdminOptions) (http.Handler, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newStatusCollector(status),
		newSlotCollector(status),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}
	a := &admin{status: status, log: log}
	a.routes = map[string]http.Handler{
		"/health":  http.HandlerFunc(a.health),
		"/status":  http.HandlerFunc(a.readiness),
		"/stats":   http.HandlerFunc(a.stats),
		"/metrics": promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}),
	}
	return a, nil
}

type admin struct {
	status func() pipeline.Status
	log    *slog.Logger
	routes map[string]http.Handler
}

// ServeHTTP routes by exact path. It does not use http.ServeMux because the
// mux answers 404 and 405 in plain text, and the API promises JSON errors.
func (a *admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, ok := a.routes[r.URL.Path]
	if !ok {
		a.writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint %q: use /health, /status, /stats or /metrics", r.URL.Path))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		a.writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s: use GET", r.Method, r.URL.Path))
		return
	}
	h.ServeHTTP(w, r)
}

func (a *admin) health(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// statusDoc is the body of /status and /stats.
type statusDoc struct {
	OK bool `json:"ok"`
	pipeline.Status
}

func (a *admin) snapshot() statusDoc {
	st := a.status()
	// Empty lists, not null, so that clients can iterate without a check.
	if st.Sources == nil {
		st.Sources = []pipeline.SourceStatus{}
	}
	if st.Sinks == nil {
		st.Sinks = []pipeline.SinkStatus{}
	}
	return statusDoc{OK: ready(st), Status: st}
}

// ready reports whether every source is streaming from a healthy slot. A pipeline always has a
// source, so an empty list only comes from a caller's own status func; it
// counts as ready since nothing is failing.
func ready(st pipeline.Status) bool {
	for _, s := range st.Sources {
		if !s.Streaming || !s.SlotOK() {
			return false
		}
	}
	return true
}

func (a *admin) readiness(w http.ResponseWriter, _ *http.Request) {
	doc := a.snapshot()
	code := http.StatusOK
	if !doc.OK {
		code = http.StatusServiceUnavailable
	}
	a.writeJSON(w, code, doc)
}

func (a *admin) stats(w http.ResponseWriter, _ *http.Request) {
	a.writeJSON(w, http.StatusOK, a.snapshot())
}

func (a *admin) writeError(w http.ResponseWriter, code int, msg string) {
	a.writeJSON(w, code, struct {
		Error string `json:"error"`
	}{msg})
}

func (a *admin) writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store") // a status is stale at once
	w.WriteHeader(code)
	// The status is already sent, so a failed write (a client gone) can
	// only be logged.
	if err := json.NewEncoder(w).Encode(v); err != nil {
		a.log.Debug("admin API: writing response", "err", err)
	}
}
