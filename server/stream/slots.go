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

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/source"
)

// slot is what the server knows of one of its slots.
type slot struct {
	name string
	// busy holds a token while a client streams from the slot.
	busy chan struct{}

	// snapMu guards snap: snapshot reads import it under the read lock,
	// release takes the write lock, so no read imports a snapshot being
	// released.
	snapMu sync.RWMutex
	snap   *heldSnapshot // nil once released (or never held by this process)
}

// heldSnapshot is the snapshot a slot exported when it was created. It stays
// valid while the replication connection that created the slot stays idle:
// one goroutine owns that connection and closes it on release.
type heldSnapshot struct {
	id      string    // the snapshot identifier, for SET TRANSACTION SNAPSHOT
	at      event.LSN // the slot's consistent point
	expires time.Time
	release chan struct{} // closed to release
	done    chan struct{} // closed once the connection is closed
	once    sync.Once
}

// snapshotID is the form of exported snapshot identifiers
// ("00000003-00000002-1"). SET TRANSACTION SNAPSHOT takes a literal, not a
// parameter, so the identifier is checked before it goes into SQL.
var snapshotID = regexp.MustCompile(`^[0-9A-F]+(-[0-9A-F]+)+$`)

func (h *heldSnapshot) stop() {
	h.once.Do(func() { close(h.release) })
	<-h.done
}

// releaseSnapshot ends the slot's held snapshot, if any, and waits until
// its connection is closed (the slot is then free to stream from).
func (sl *slot) releaseSnapshot() {
	sl.snapMu.Lock()
	h := sl.snap
	sl.snap = nil
	sl.snapMu.Unlock()
	if h != nil {
		h.stop()
	}
}

type initResponse struct {
	SlotName        string    `json:"slotName"`
	ConsistentPoint event.LSN `json:"consistentPoint"`
	SnapshotExpires time.Time `json:"snapshotExpires"`
}

// handleInit creates a slot of its own (never dropping anyone's) with its
// publication and an exported snapshot. pgdeltastream's README calls it
// with GET, its clients with POST: both work.
func (s *Server) handleInit(w http.ResponseWriter, r *http.Request) {
	if !method(w, r, http.MethodPost, http.MethodGet) {
		return
	}
	// Not cancelled by a client that leaves mid-way: a slot half made
	// (created by the server, unknown to us) would linger, holding WAL.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Minute)
	defer cancel()
	sl, h, err := s.createSlot(ctx)
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			ae = serverError(err)
		}
		s.log.Warn("init failed", "err", err)
		writeError(w, ae)
		return
	}
	writeJSON(w, http.StatusOK, initResponse{SlotName: sl.name, ConsistentPoint: h.at, SnapshotExpires: h.expires.UTC()})
}

// serverError turns an error that is not the client's into a 5xx (or, for
// a source.UserError such as wal_level or a missing privilege, a 503
// naming the fix).
func serverError(err error) *apiError {
	var ue *source.UserError
	if errors.As(err, &ue) {
		return errorf(http.StatusServiceUnavailable, ue.Msg)
	}
	return errorf(http.StatusInternalServerError, err.Error())
}

func (s *Server) createSlot(ctx context.Context) (*slot, *heldSnapshot, error) {
	n, err := s.countPrefix(ctx, s.opts.SlotPrefix)
	if err != nil {
		return nil, nil, err
	}
	if n >= s.opts.MaxSlots {
		return nil, nil, errorf(http.StatusConflict, fmt.Sprintf("%d slots named %s* exist, the most allowed (--max-slots): drop the ones no client uses with pgfeed slot drop NAME", n, s.opts.SlotPrefix))
	}
	name := s.newSlotName()
	cfg := source.Config{DSN: s.opts.DSN, Slot: name, Tables: s.opts.Tables}
	// The publication first: pgoutput looks it up in the slot's snapshot.
	if err := source.Prepare(ctx, cfg); err != nil {
		return nil, nil, err
	}
	repl, err := s.connectReplication(ctx)
	if err != nil {
		s.dropPublication(name)
		return nil, nil, err
	}
	res, err := pglogrepl.CreateReplicationSlot(ctx, repl, name, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{SnapshotAction: "EXPORT_SNAPSHOT"})
	if err != nil {
		repl.Close(context.Background())
		s.dropPublication(name)
		return nil, nil, source.ExplainSQL(err, "creating replication slot "+name)
	}
	at, err := event.ParseLSN(res.ConsistentPoint)
	if err != nil || !snapshotID.MatchString(res.SnapshotName) {
		repl.Close(context.Background())
		return nil, nil, fmt.Errorf("creating replication slot %s: unexpected answer %+v", name, res)
	}
	h := &heldSnapshot{
		id: res.SnapshotName, at: at, expires: time.Now().Add(s.opts.SnapshotHold),
		release: make(chan struct{}), done: make(chan struct{}),
	}
	sl := &slot{name: name, busy: make(chan struct{}, 1), snap: h}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		repl.Close(context.Background())
		return nil, nil, errorf(http.StatusServiceUnavailable, "the server is shutting down")
	}
	s.slots[name] = sl
	s.wg.Add(1)
	s.mu.Unlock()
	go s.hold(sl, h, repl)
	s.log.Info("created slot", "slot", name, "consistent_point", at, "snapshot", h.id, "held_until", h.expires)
	return sl, h, nil
}

// hold owns the replication connection that exported h: it keeps it idle
// (the snapshot lives until its next command) until release, expiry or Close.
func (s *Server) hold(sl *slot, h *heldSnapshot, repl *pgconn.PgConn) {
	defer s.wg.Done()
	t := time.NewTimer(time.Until(h.expires))
	defer t.Stop()
	select {
	case <-h.release:
	case <-t.C:
		s.log.Info("snapshot expired", "slot", sl.name)
	case <-s.ctx.Done():
	}
	repl.Close(context.Background())
	close(h.done)
	// An expiry detaches the snapshot; a release already did.
	sl.snapMu.Lock()
	if sl.snap == h {
		sl.snap = nil
	}
	sl.snapMu.Unlock()
}

func (s *Server) connectReplication(ctx context.Context) (*pgconn.PgConn, error) {
	cfg, err := source.ConnConfig(s.opts.DSN)
	if err != nil {
		return nil, err
	}
	pc := cfg.Config.Copy()
	pc.RuntimeParams["replication"] = "database"
	pc.RuntimeParams["application_name"] = "pgfeed serve"
	conn, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, source.ExplainSQL(err, "opening a replication connection")
	}
	return conn, nil
}

// dropPublication removes the publication made for a slot that could not
// be created: it is this server's own, just made, for no one else.
func (s *Server) dropPublication(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return
	}
	defer conn.Release()
	_, _ = conn.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{name}.Sanitize())
}

// lookup returns the slot named name, if it is one of this server's: made
// by this process, or an existing pgoutput slot of this database with the
// server's prefix (made before a restart).
func (s *Server) lookup(ctx context.Context, name string) (*slot, error) {
	if name == "" {
		return nil, errorf(http.StatusBadRequest, "slotName is missing: pass the slotName /v1/init returned")
	}
	unknown := errorf(http.StatusNotFound, fmt.Sprintf("unknown slot %q: use a slotName that /v1/init returned (POST /v1/init creates a new slot)", name))
	if !strings.HasPrefix(name, s.opts.SlotPrefix) || source.CheckSlotName(name) != nil {
		return nil, unknown
	}
	s.mu.Lock()
	sl := s.slots[name]
	s.mu.Unlock()
	if sl != nil {
		return sl, nil
	}
	var exists bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots
		WHERE slot_name = $1 AND plugin = 'pgoutput' AND database = current_database())`, name).Scan(&exists)
	if err != nil {
		return nil, serverError(source.ExplainSQL(err, "looking up slot "+name))
	}
	if !exists {
		return nil, unknown
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sl = s.slots[name]; sl == nil {
		sl = &slot{name: name, busy: make(chan struct{}, 1)}
		s.slots[name] = sl
	}
	return sl, nil
}
