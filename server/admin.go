package server

import (
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"

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
	// Level is the process's log level, which POST /debug/on sets to
	// debug and /debug/off back to what it was when NewAdmin ran. Nil:
	// those endpoints answer 501.
	Level *slog.LevelVar
	// Token, when set, is the bearer token /debug/... requires
	// (Authorization: Bearer TOKEN). Without one, /debug/... is served
	// only when Loopback is true.
	Token string
	// Loopback tells that the server listens on a loopback address only.
	Loopback bool
	// Clients lists the clients of the WebSocket API, shown as "clients"
	// in /status and /stats and on the status page; nil: none (an empty
	// list). Each element is marshalled as JSON; "name" or "remote" label
	// it on the page.
	Clients func() []any
}

// statusPage is the page at /: plain HTML and a little script that polls
// /stats every second, with no resource from elsewhere.
//
//go:embed ui/index.html
var statusPage []byte

// NewAdmin returns the handler of the admin API. status is called once per
// request (and once per scrape) and must be safe to call concurrently, as
// (*pipeline.Pipeline).Status is.
//
// Every endpoint answers GET and HEAD; any other method gets 405, and an
// unknown path 404, each with a one-line JSON body {"error": "..."}.
//
//   - /: the status page (HTML), which polls /stats every second.
//   - /health: 200 "ok" as long as the process serves HTTP (liveness).
//   - /status: the Status as JSON plus "ok", which is true when every source
//     is streaming and no slot is invalidated or at risk of it; 200 when ok,
//     else 503 (readiness: a source that is reconnecting, or whose slot is
//     about to be invalidated, makes the instance not ready).
//   - /stats: the same JSON, always 200, for dashboards and scripts that
//     want the counters whatever the state. It carries "ok" too, so that a
//     reader of either endpoint sees the same document.
//   - POST /debug/on, /debug/off: the log level to debug and back;
//     /debug/pprof/...: net/http/pprof. These need the bearer token of
//     opts.Token, or without one a loopback listener; else 401 (403).
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
	a := &admin{status: status, log: log, level: opts.Level, token: opts.Token, loopback: opts.Loopback, clients: opts.Clients}
	if a.level != nil {
		a.baseLevel = a.level.Level()
	}
	a.routes = map[string]http.Handler{
		"/":        http.HandlerFunc(a.page),
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

	clients   func() []any
	level     *slog.LevelVar
	baseLevel slog.Level
	token     string
	loopback  bool
}

// IsLoopback reports whether a listen address (host:port) is a loopback
// one: localhost, 127.0.0.0/8 or ::1.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// authorized checks a /debug/ request's bearer token, answering 401 (or
// 403 when no token is configured and the listener is not loopback)
// itself when it fails.
func (a *admin) authorized(w http.ResponseWriter, r *http.Request) bool {
	if a.token == "" {
		if a.loopback {
			return true
		}
		a.writeError(w, http.StatusForbidden, "the /debug endpoints need http.token when http.listen is not a loopback address")
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(a.token)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pgfeed admin"`)
		a.writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
		return false
	}
	return true
}

// debug serves /debug/on, /debug/off and /debug/pprof/..., after the token
// check.
func (a *admin) debug(w http.ResponseWriter, r *http.Request) {
	if !a.authorized(w, r) {
		return
	}
	switch p := r.URL.Path; {
	case p == "/debug/on" || p == "/debug/off":
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			a.writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s: use POST", r.Method, p))
			return
		}
		if a.level == nil {
			a.writeError(w, http.StatusNotImplemented, "this server cannot change the log level")
			return
		}
		lv := slog.LevelDebug
		if p == "/debug/off" {
			lv = a.baseLevel
		}
		a.level.Set(lv)
		a.log.Info("admin API: log level set", "level", lv.String())
		a.writeJSON(w, http.StatusOK, struct {
			Level string `json:"level"`
		}{strings.ToLower(lv.String())})
	case p == "/debug/pprof/cmdline":
		pprof.Cmdline(w, r)
	case p == "/debug/pprof/profile":
		pprof.Profile(w, r)
	case p == "/debug/pprof/symbol":
		pprof.Symbol(w, r)
	case p == "/debug/pprof/trace":
		pprof.Trace(w, r)
	case strings.HasPrefix(p, "/debug/pprof/"):
		pprof.Index(w, r) // the index and the named profiles (heap, goroutine, ...)
	default:
		a.writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint %q: use /debug/on, /debug/off or /debug/pprof/", p))
	}
}

// ServeHTTP routes by exact path. It does not use http.ServeMux because the
// mux answers 404 and 405 in plain text, and the API promises JSON errors.
func (a *admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.log.Debug("admin API request", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
	if strings.HasPrefix(r.URL.Path, "/debug/") {
		a.debug(w, r)
		return
	}
	h, ok := a.routes[r.URL.Path]
	if !ok {
		a.writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint %q: use /, /health, /status, /stats, /metrics or /debug/", r.URL.Path))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		a.writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s: use GET", r.Method, r.URL.Path))
		return
	}
	h.ServeHTTP(w, r)
}

func (a *admin) page(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// The page loads nothing from elsewhere and runs only its own script.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(statusPage)
}

func (a *admin) health(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// statusDoc is the body of /status and /stats.
type statusDoc struct {
	OK bool `json:"ok"`
	pipeline.Status
	// Clients are the WebSocket API's clients (AdminOptions.Clients).
	Clients []any `json:"clients"`
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
	clients := []any{}
	if a.clients != nil {
		if c := a.clients(); c != nil {
			clients = c
		}
	}
	return statusDoc{OK: ready(st), Status: st, Clients: clients}
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
