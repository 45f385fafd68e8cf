package stream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/route"
	"github.com/pgfeed/pgfeed/source"
)

// The native v2 API: named streams, each a slot of its own (named
// StreamPrefix + name) with its publication, and optionally an initial
// snapshot delivered as read frames on the socket before the changes.
//
//	GET    /v2/streams                  the streams, with their slots' state
//	POST   /v2/streams                  {"name","tables":[...],"snapshot":true}
//	DELETE /v2/streams/{name}           drops the stream's slot and publication
//	GET    /v2/streams/{name}/ws        WebSocket (?format=json|wal2json|debezium|cloudevents)
//	POST   /v2/streams/{name}/backfill  {"tables":[...]}: their rows as read frames, merged into the stream

// namedStream is what the server knows of a v2 stream.
type namedStream struct {
	name, slot string
	tables     []string // nil when unknown (made before a restart): the publication's
	snapshot   bool
	busy       chan struct{}
	stop       chan struct{} // closed by delete
	stopOnce   sync.Once

	mu      sync.Mutex
	pending *source.Stream // opened by create to read its snapshot, for the first client
}

var streamName = regexp.MustCompile(`^[a-z0-9_]{1,40}$`)

func (s *Server) streamSlot(name string) string { return s.opts.StreamPrefix + name }

// takePending hands the stream opened by create to a session, once.
func (ns *namedStream) takePending() *source.Stream {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	st := ns.pending
	ns.pending = nil
	return st
}

func (s *Server) handleStreams(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		s.listStreams(w, r)
	case http.MethodPost:
		s.createStream(w, r)
	default:
		method(w, r, http.MethodGet, http.MethodPost)
	}
}

// handleStream2 routes /v2/streams/{name}[/ws|/backfill].
func (s *Server) handleStream2(w http.ResponseWriter, r *http.Request) {
	name, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v2/streams/"), "/")
	switch {
	case rest == "" && r.Method == http.MethodDelete:
		s.deleteStream(w, r, name)
	case rest == "":
		method(w, r, http.MethodDelete)
	case rest == "ws":
		if !method(w, r, http.MethodGet) {
			return
		}
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			writeError(w, errorf(http.StatusBadRequest, "this endpoint is a WebSocket: connect with a WebSocket client to ws://HOST/v2/streams/"+name+"/ws"))
			return
		}
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Time{})
		conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: s.opts.Origins})
		if err != nil {
			return
		}
		conn.SetReadLimit(int64(max(s.opts.MaxMessageBytes*4, 64<<10)))
		s.session(conn, r, func(ctx context.Context, r *http.Request) (*target, *apiError) { return s.v2Target(ctx, name) })
	case rest == "backfill":
		if method(w, r, http.MethodPost) {
			s.backfill(w, r, name)
		}
	default:
		writeError(w, errorf(http.StatusNotFound, fmt.Sprintf("no such endpoint %q: use /v2/streams/NAME, /v2/streams/NAME/ws or /v2/streams/NAME/backfill", r.URL.Path)))
	}
}

// lookupStream returns the named stream: known to this process, or an
// existing slot with the stream prefix (made before a restart).
func (s *Server) lookupStream(ctx context.Context, name string) (*namedStream, *apiError) {
	unknown := errorf(http.StatusNotFound, fmt.Sprintf("unknown stream %q: GET /v2/streams lists them, POST /v2/streams creates one", name))
	if !streamName.MatchString(name) {
		return nil, unknown
	}
	s.mu.Lock()
	ns := s.named[name]
	s.mu.Unlock()
	if ns != nil {
		return ns, nil
	}
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots
		WHERE slot_name = $1 AND plugin = 'pgoutput' AND database = current_database())`, s.streamSlot(name)).Scan(&exists); err != nil {
		return nil, serverError(source.ExplainSQL(err, "looking up stream "+name))
	}
	if !exists {
		return nil, unknown
	}
	// Made before a restart: its definition says what it streams.
	def, ok, err := s.defs.get(ctx, s.streamSlot(name))
	if err != nil {
		return nil, serverError(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ns = s.named[name]; ns == nil {
		ns = &namedStream{name: name, slot: s.streamSlot(name), busy: make(chan struct{}, 1), stop: make(chan struct{})}
		if ok {
			ns.tables, ns.snapshot = def.tables, def.snapshot
		}
		s.named[name] = ns
	}
	return ns, nil
}

func (s *Server) v2Target(ctx context.Context, name string) (*target, *apiError) {
	ns, aerr := s.lookupStream(ctx, name)
	if aerr != nil {
		return nil, aerr
	}
	return &target{
		name: "stream " + name, busy: ns.busy, stop: ns.stop, format: encode.FormatJSON,
		hint: "create a stream of your own with POST /v2/streams",
		open: func(ctx context.Context) (*source.Stream, error) {
			if st := ns.takePending(); st != nil {
				return st, nil
			}
			// The tables are the stream's definition; a stream made
			// before definitions were kept has the publication's.
			return source.Open(ctx, source.Config{
				DSN: s.opts.DSN, Slot: ns.slot, Tables: ns.tables, Create: ns.tables != nil, ExpectSlot: true,
				InitialSnapshot: ns.snapshot, Transactions: true, Logger: s.log,
			})
		},
	}, nil
}

type createRequest struct {
	Name     string   `json:"name"`
	Tables   []string `json:"tables"`
	Snapshot bool     `json:"snapshot"`
}

type streamInfo struct {
	Name          string  `json:"name"`
	Slot          string  `json:"slot"`
	Active        bool    `json:"active"`
	ConfirmedLSN  *string `json:"confirmed_lsn"`
	RetainedBytes *int64  `json:"retained_bytes"`
	WALStatus     *string `json:"wal_status"`
	WebSocket     string  `json:"ws"`
	// Tables are the globs the stream was created with (nil: unknown, a
	// stream made before definitions were kept).
	Tables   []string `json:"tables"`
	Snapshot bool     `json:"snapshot"`
}

func (s *Server) createStream(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if aerr := decodeRequest(r, w, &req); aerr != nil {
		writeError(w, aerr)
		return
	}
	if !streamName.MatchString(req.Name) {
		writeError(w, errorf(http.StatusBadRequest, fmt.Sprintf("invalid stream name %q: use 1 to 40 lower-case letters, digits and underscores", req.Name)))
		return
	}
	tables := req.Tables
	if len(tables) == 0 {
		tables = s.opts.Tables
	}
	if tok := tokenOf(r.Context()); tok != nil && len(tok.patterns) > 0 && len(req.Tables) == 0 {
		tables = tok.Tables // a token limited to tables makes streams of those
	}
	if err := (&source.Config{Slot: s.streamSlot(req.Name), Tables: tables}).Validate(); err != nil {
		writeError(w, errorf(http.StatusBadRequest, "tables: "+err.Error()))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	n, err := s.countPrefix(ctx, s.opts.StreamPrefix)
	if err != nil {
		writeError(w, serverError(err))
		return
	}
	if n >= s.opts.MaxSlots {
		writeError(w, errorf(http.StatusConflict, fmt.Sprintf("%d streams exist, the most allowed (--max-slots): delete one with DELETE /v2/streams/NAME", n)))
		return
	}
	if _, aerr := s.lookupStream(ctx, req.Name); aerr == nil {
		writeError(w, errorf(http.StatusConflict, fmt.Sprintf("stream %q exists: delete it first, or pick another name", req.Name)))
		return
	}
	slot := s.streamSlot(req.Name)
	// The definition first: a slot never exists without it, so that a
	// restart cannot find the stream and not know its tables.
	if err := s.defs.put(ctx, slot, streamDef{tables: tables, snapshot: req.Snapshot}); err != nil {
		writeError(w, serverError(err))
		return
	}
	// Open creates the slot and its publication, and with a snapshot
	// starts reading it: the stream waits, bounded, for the first client.
	st, err := source.Open(ctx, source.Config{
		DSN: s.opts.DSN, Slot: slot, Tables: tables, Create: true,
		InitialSnapshot: req.Snapshot, Transactions: true, Logger: s.log,
	})
	if err != nil {
		_ = s.defs.remove(context.WithoutCancel(ctx), slot)
		var ue *source.UserError
		if errors.As(err, &ue) {
			writeError(w, errorf(http.StatusBadRequest, ue.Msg))
			return
		}
		writeError(w, serverError(err))
		return
	}
	ns := &namedStream{name: req.Name, slot: slot, tables: tables, snapshot: req.Snapshot, busy: make(chan struct{}, 1), stop: make(chan struct{})}
	if req.Snapshot {
		ns.pending = st
		// A snapshot nobody comes to read is not held for ever: closed, it
		// is read again, from a new slot, by the first client.
		time.AfterFunc(s.opts.SnapshotHold, func() {
			if st := ns.takePending(); st != nil {
				st.Close()
			}
		})
	} else {
		st.Close()
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		if st := ns.takePending(); st != nil {
			st.Close()
		}
		writeError(w, errorf(http.StatusServiceUnavailable, "the server is shutting down: the stream was created; connect to it later"))
		return
	}
	s.named[req.Name] = ns
	s.mu.Unlock()
	s.log.Info("created stream", "stream", req.Name, "slot", slot, "tables", tables, "snapshot", req.Snapshot)
	writeJSON(w, http.StatusCreated, streamInfo{Name: req.Name, Slot: slot, WebSocket: "/v2/streams/" + req.Name + "/ws", Tables: tables, Snapshot: req.Snapshot})
}

func (s *Server) listStreams(w http.ResponseWriter, r *http.Request) {
	defs, err := s.defs.all(r.Context())
	if err != nil {
		writeError(w, serverError(err))
		return
	}
	rows, err := s.pool.Query(r.Context(), `SELECT slot_name::text, active, confirmed_flush_lsn::text,
		pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, wal_status
		FROM pg_replication_slots WHERE starts_with(slot_name, $1) AND database = current_database() ORDER BY 1`, s.opts.StreamPrefix)
	if err != nil {
		writeError(w, serverError(source.ExplainSQL(err, "listing streams")))
		return
	}
	list := []streamInfo{}
	for rows.Next() {
		var i streamInfo
		if err := rows.Scan(&i.Slot, &i.Active, &i.ConfirmedLSN, &i.RetainedBytes, &i.WALStatus); err != nil {
			writeError(w, serverError(err))
			return
		}
		i.Name = strings.TrimPrefix(i.Slot, s.opts.StreamPrefix)
		i.WebSocket = "/v2/streams/" + i.Name + "/ws"
		if d, ok := defs[i.Slot]; ok {
			i.Tables, i.Snapshot = d.tables, d.snapshot
		}
		list = append(list, i)
	}
	if err := rows.Err(); err != nil {
		writeError(w, serverError(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"streams": list})
}

func (s *Server) deleteStream(w http.ResponseWriter, r *http.Request, name string) {
	ns, aerr := s.lookupStream(r.Context(), name)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	ns.stopOnce.Do(func() { close(ns.stop) })
	// Its client, if any, is told and let go; then the slot is free.
	select {
	case ns.busy <- struct{}{}:
	case <-time.After(30 * time.Second):
		writeError(w, errorf(http.StatusConflict, fmt.Sprintf("stream %q: its client did not let go within 30s; try again", name)))
		return
	}
	defer func() { <-ns.busy }()
	if st := ns.takePending(); st != nil {
		st.Close()
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	// Named after the prefix, both are this server's own.
	if _, err := s.pool.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, ns.slot); err != nil {
		writeError(w, serverError(source.ExplainSQL(err, "dropping the slot of stream "+name)))
		return
	}
	if _, err := s.pool.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{ns.slot}.Sanitize()); err != nil {
		writeError(w, serverError(source.ExplainSQL(err, "dropping the publication of stream "+name)))
		return
	}
	if err := s.defs.remove(ctx, ns.slot); err != nil {
		writeError(w, serverError(err))
		return
	}
	s.mu.Lock()
	if s.named[name] == ns {
		delete(s.named, name)
	}
	s.mu.Unlock()
	s.log.Info("deleted stream", "stream", name)
	writeJSON(w, http.StatusOK, map[string]string{"deleted": name})
}

type backfillRequest struct {
	Tables []string `json:"tables"`
}

// backfill asks the stream to read tables again while it streams (their
// rows come as read frames, merged so that none overwrites a newer
// change). The request travels through the WAL: it is served whenever the
// stream's client is connected, now or later.
func (s *Server) backfill(w http.ResponseWriter, r *http.Request, name string) {
	var req backfillRequest
	if aerr := decodeRequest(r, w, &req); aerr != nil {
		writeError(w, aerr)
		return
	}
	if len(req.Tables) == 0 {
		writeError(w, errorf(http.StatusBadRequest, `tables is missing: {"tables":["public.orders"]}`))
		return
	}
	if tok := tokenOf(r.Context()); tok != nil {
		for _, t := range req.Tables {
			schema, table, err := route.ParseTableName(t)
			if err != nil {
				writeError(w, errorf(http.StatusBadRequest, fmt.Sprintf("table %q: %v", t, err)))
				return
			}
			if !tok.allows(schema, table) {
				writeError(w, errorf(http.StatusForbidden, fmt.Sprintf("the token may not read table %s", t)))
				return
			}
		}
	}
	ns, aerr := s.lookupStream(r.Context(), name)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	conn, err := s.pool.Acquire(r.Context())
	if err != nil {
		writeError(w, serverError(err))
		return
	}
	defer conn.Release()
	lsn, err := source.RequestBackfill(r.Context(), conn.Conn(), ns.slot, req.Tables)
	if err != nil {
		writeError(w, asAPIError(err))
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"stream": name, "requested_at": lsn})
}

func (s *Server) countPrefix(ctx context.Context, prefix string) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots
		WHERE starts_with(slot_name, $1) AND database = current_database()`, prefix).Scan(&n)
	if err != nil {
		return 0, source.ExplainSQL(err, "counting slots")
	}
	return n, nil
}
