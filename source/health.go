package source

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrSlotInvalidated is wrapped by the error of a slot that PostgreSQL
// invalidated (max_slot_wal_keep_size, idle_replication_slot_timeout, a
// conflict with recovery): the WAL or catalog rows it needed are gone, so
// the changes it held can no longer be decoded. Such errors wrap ErrGap too.
var ErrSlotInvalidated = errors.New("replication slot invalidated")

// Querier runs a query: a *pgx.Conn, a pool or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Health is the state of one replication slot as PostgreSQL reports it in
// pg_replication_slots and pg_stat_replication_slots. Columns the server's
// version lacks are left at their zero value (nil for pointers).
type Health struct {
	Slot string `json:"slot"`
	// Exists is false when the server has no slot of that name; nothing
	// else is set then.
	Exists bool `json:"exists"`
	Active bool `json:"active"`
	// WALStatus is "reserved", "extended", "unreserved" or "lost"
	// (pg_replication_slots.wal_status).
	WALStatus string `json:"wal_status,omitempty"`
	// SafeWALSize is how many bytes of WAL can still be written before
	// max_slot_wal_keep_size makes the slot lose WAL it needs; nil when no
	// limit is set (or the slot is lost). It is negative once the slot's
	// WAL is beyond the limit (wal_status "unreserved").
	SafeWALSize *int64 `json:"safe_wal_size"`
	// RetainedBytes is the WAL the slot makes the server keep:
	// pg_current_wal_lsn() - restart_lsn (0 once restart_lsn is gone).
	RetainedBytes int64 `json:"retained_wal_bytes"`
	// MaxSlotWALKeepSize is the server's max_slot_wal_keep_size in bytes,
	// -1 for no limit.
	MaxSlotWALKeepSize int64 `json:"max_slot_wal_keep_size"`
	// InactiveSince is when the slot was last released (PostgreSQL 17+);
	// nil while it is in use.
	InactiveSince *time.Time `json:"inactive_since,omitempty"`
	// IdleTimeout is idle_replication_slot_timeout (PostgreSQL 18+): an
	// inactive slot is invalidated after it. Zero: no timeout.
	IdleTimeout time.Duration `json:"idle_replication_slot_timeout,omitempty"`
	// InactiveFor is how long the slot has been inactive, by the server's
	// clock (PostgreSQL 17+).
	InactiveFor time.Duration `json:"inactive_for,omitempty"`
	// InvalidationReason is why the slot was invalidated (PostgreSQL 17+:
	// wal_removed, rows_removed, wal_level_insufficient, idle_timeout);
	// on PostgreSQL 16, "rows_removed or wal_level_insufficient" when the
	// slot conflicted with recovery. Empty for a slot that is not
	// invalidated, and before PostgreSQL 17 for one that lost its WAL
	// (WALStatus "lost").
	InvalidationReason string `json:"invalidation_reason,omitempty"`
	// Conflicting reports a logical slot invalidated by a conflict with
	// recovery (PostgreSQL 17+); PostgreSQL 16 sets it for any invalidation.
	Conflicting *bool `json:"conflicting,omitempty"`
	// Failover and Synced are PostgreSQL 17's failover slot columns: the
	// slot is synced to standbys, and (on a standby) this slot was synced
	// from the primary.
	Failover *bool `json:"failover,omitempty"`
	Synced   *bool `json:"synced,omitempty"`
	// Stats are the slot's decoding counters (PostgreSQL 14+); nil before
	// the server has any for it.
	Stats *SlotStats `json:"stats,omitempty"`
	// ServerVersion is server_version_num (170002 for 17.2).
	ServerVersion int `json:"server_version"`
}

// SlotStats are a logical slot's counters from pg_stat_replication_slots:
// how much decoding spilled to disk and how much was streamed in progress.
// They count since StatsReset (or the server's start) and survive restarts.
type SlotStats struct {
	SpillTxns   int64      `json:"spill_txns"`
	SpillCount  int64      `json:"spill_count"`
	SpillBytes  int64      `json:"spill_bytes"`
	StreamTxns  int64      `json:"stream_txns"`
	StreamCount int64      `json:"stream_count"`
	StreamBytes int64      `json:"stream_bytes"`
	TotalTxns   int64      `json:"total_txns"`
	TotalBytes  int64      `json:"total_bytes"`
	StatsReset  *time.Time `json:"stats_reset,omitempty"`
}

// SlotHealth reads the health of one slot. A slot that does not exist is
// no error: the Health says so with Exists false.
func SlotHealth(ctx context.Context, conn Querier, slot string) (Health, error) {
	hs, err := slotHealth(ctx, conn, slot)
	if err != nil {
		return Health{}, err
	}
	if len(hs) == 0 {
		return Health{Slot: slot}, nil
	}
	return hs[0], nil
}

// SlotHealths reads the health of every slot of the server, by name.
// Physical slots are included; their Stats are nil.
func SlotHealths(ctx context.Context, conn Querier) ([]Health, error) {
	return slotHealth(ctx, conn, "")
}

// slotHealth reads the slot named (every slot when ""), asking only for
// the columns the server's version has.
func slotHealth(ctx context.Context, conn Querier, slot string) ([]Health, error) {
	what := "reading the health of replication slot " + slot
	if slot == "" {
		what = "reading the health of the replication slots"
	}
	var version int
	if err := queryRow(ctx, conn, "SELECT current_setting('server_version_num')::int", nil, &version); err != nil {
		return nil, explainSQL(err, what)
	}
	rows, err := conn.Query(ctx, healthQuery(version), slot)
	if err != nil {
		return nil, explainSQL(err, what)
	}
	hs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Health, error) {
		h := Health{Exists: true, ServerVersion: version}
		var keepMB, inactiveFor, idleTimeout *float64
		var conflicting, failover, synced *bool
		var reason, walStatus *string
		var st SlotStats
		var stats *bool
		var restartGone bool
		dest := []any{&h.Slot, &h.Active, &walStatus, &h.SafeWALSize, &h.RetainedBytes, &restartGone, &keepMB,
			&conflicting, &reason, &h.InactiveSince, &inactiveFor, &failover, &synced, &idleTimeout,
			&stats, &st.SpillTxns, &st.SpillCount, &st.SpillBytes, &st.StreamTxns, &st.StreamCount, &st.StreamBytes,
			&st.TotalTxns, &st.TotalBytes, &st.StatsReset}
		if err := r.Scan(dest...); err != nil {
			return h, err
		}
		if walStatus != nil {
			h.WALStatus = *walStatus
		}
		h.MaxSlotWALKeepSize = -1
		if keepMB != nil && *keepMB >= 0 {
			h.MaxSlotWALKeepSize = int64(*keepMB) << 20
		}
		h.Conflicting, h.Failover, h.Synced = conflicting, failover, synced
		switch {
		case reason != nil:
			h.InvalidationReason = *reason
		case conflicting != nil && *conflicting && !restartGone:
			// PostgreSQL 16 sets conflicting for every invalidation of a
			// logical slot; only one for lack of WAL (wal_status says it)
			// drops its restart_lsn.
			h.InvalidationReason = "rows_removed or wal_level_insufficient"
		}
		if inactiveFor != nil && h.InactiveSince != nil {
			h.InactiveFor = time.Duration(*inactiveFor * float64(time.Second))
		}
		if idleTimeout != nil && *idleTimeout > 0 {
			h.IdleTimeout = time.Duration(*idleTimeout * float64(time.Second))
		}
		if stats != nil && *stats {
			h.Stats = &st
		}
		return h, nil
	})
	if err != nil {
		return nil, explainSQL(err, what)
	}
	return hs, nil
}

// healthQuery selects the same columns on every version, NULL where the
// server lacks one, so that one Scan reads them all. $1 names the slot,
// or an empty string for every slot.
func healthQuery(version int) string {
	col := func(since int, expr, typ string) string {
		if version >= since {
			return expr
		}
		return "NULL::" + typ
	}
	// On a standby pg_current_wal_lsn() fails; the replay position is what
	// its slots retain WAL against.
	current := "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END"
	idle := "NULL::float8"
	if version >= 180000 {
		// In seconds whatever unit the server reports it in.
		idle = `(SELECT CASE unit WHEN 'min' THEN setting::float8 * 60 WHEN 's' THEN setting::float8 WHEN 'ms' THEN setting::float8 / 1000 ELSE setting::float8 END
			FROM pg_settings WHERE name = 'idle_replication_slot_timeout')`
	}
	stats := []string{"NULL::bool", "0::bigint", "0::bigint", "0::bigint", "0::bigint", "0::bigint", "0::bigint", "0::bigint", "0::bigint", "NULL::timestamptz"}
	join := ""
	if version >= 140000 {
		stats = []string{"st.slot_name IS NOT NULL", "coalesce(st.spill_txns, 0)", "coalesce(st.spill_count, 0)", "coalesce(st.spill_bytes, 0)",
			"coalesce(st.stream_txns, 0)", "coalesce(st.stream_count, 0)", "coalesce(st.stream_bytes, 0)",
			"coalesce(st.total_txns, 0)", "coalesce(st.total_bytes, 0)", "st.stats_reset"}
		join = "LEFT JOIN pg_stat_replication_slots st ON st.slot_name = s.slot_name"
	}
	return `SELECT s.slot_name::text, s.active, ` + col(130000, "s.wal_status", "text") + `, ` + col(130000, "s.safe_wal_size", "bigint") + `,
		coalesce(pg_wal_lsn_diff(` + current + `, s.restart_lsn), 0)::bigint, s.restart_lsn IS NULL,
		` + col(130000, "(SELECT setting::float8 FROM pg_settings WHERE name = 'max_slot_wal_keep_size')", "float8") + `,
		` + col(160000, "s.conflicting", "bool") + `, ` + col(170000, "s.invalidation_reason", "text") + `,
		` + col(170000, "s.inactive_since", "timestamptz") + `, ` + col(170000, "extract(epoch FROM now() - s.inactive_since)::float8", "float8") + `,
		` + col(170000, "s.failover", "bool") + `, ` + col(170000, "s.synced", "bool") + `, ` + idle + `,
		` + strings.Join(stats, ", ") + `
		FROM pg_replication_slots s ` + join + `
		WHERE $1 = '' OR s.slot_name = $1
		ORDER BY s.slot_name`
}

func queryRow(ctx context.Context, conn Querier, sql string, args []any, dest ...any) error {
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	rows.Close()
	return rows.Err()
}

// Invalidated reports whether PostgreSQL invalidated the slot: it can no
// longer be streamed from.
func (h Health) Invalidated() bool {
	return h.Exists && (h.WALStatus == "lost" || h.InvalidationReason != "")
}

// AtRisk reports whether the slot is close to being invalidated: its WAL
// is beyond max_slot_wal_keep_size and goes at the next checkpoint (wal_status
// "unreserved"), less than a quarter of max_slot_wal_keep_size is left
// (safe_wal_size), or it has been inactive for three quarters of
// idle_replication_slot_timeout.
func (h Health) AtRisk() bool { return h.Warning() != "" }

// OK reports whether the slot exists and is neither invalidated nor at risk.
func (h Health) OK() bool { return h.Exists && !h.Invalidated() && !h.AtRisk() }

// Warning is one line saying why the slot is at risk and what to do, or ""
// when it is not (an invalidated slot is past warning: see Err).
func (h Health) Warning() string {
	if !h.Exists || h.Invalidated() {
		return ""
	}
	fix := fmt.Sprintf("let the consumer catch up, or raise max_slot_wal_keep_size (now %s)", mib(h.MaxSlotWALKeepSize))
	switch {
	case h.WALStatus == "unreserved":
		return fmt.Sprintf("replication slot %q retains %s of WAL, beyond max_slot_wal_keep_size: the next checkpoint invalidates it; %s", h.Slot, mib(h.RetainedBytes), fix)
	case h.SafeWALSize != nil && h.MaxSlotWALKeepSize > 0 && *h.SafeWALSize < h.MaxSlotWALKeepSize/4:
		return fmt.Sprintf("replication slot %q retains %s of WAL: %s more and max_slot_wal_keep_size invalidates it; %s", h.Slot, mib(h.RetainedBytes), mib(max(*h.SafeWALSize, 0)), fix)
	case h.IdleTimeout > 0 && h.InactiveFor > h.IdleTimeout*3/4:
		return fmt.Sprintf("replication slot %q has been inactive for %v: idle_replication_slot_timeout (%v) invalidates it; start its consumer, or raise the timeout", h.Slot, h.InactiveFor.Round(time.Second), h.IdleTimeout)
	}
	return ""
}

// Err is the error of an invalidated slot, nil for any other: one line
// that names the cause and the way out, wrapping ErrSlotInvalidated and
// ErrGap.
func (h Health) Err() error {
	if !h.Invalidated() {
		return nil
	}
	var cause, prevent string
	switch h.InvalidationReason {
	case "idle_timeout":
		cause, prevent = "it was inactive longer than idle_replication_slot_timeout", "raise idle_replication_slot_timeout, or keep a consumer on the slot"
	case "rows_removed":
		cause, prevent = "catalog rows it needed were removed (a standby without hot_standby_feedback)", "turn on hot_standby_feedback with a physical slot for the standby"
	case "wal_level_insufficient":
		cause, prevent = "wal_level on the primary is below logical", "keep wal_level = logical on the primary"
	case "", "wal_removed":
		cause, prevent = "PostgreSQL removed WAL it still needed (max_slot_wal_keep_size)", "raise max_slot_wal_keep_size, or keep the consumer from falling that far behind"
	default:
		cause, prevent = h.InvalidationReason, "see the PostgreSQL manual on replication slots"
	}
	return &UserError{
		Msg: fmt.Sprintf("replication slot %q was invalidated: %s; the changes it held are lost to pgfeed: drop it and start over (pgfeed slot drop %s, then --create with --snapshot to read every row; pgfeed run: --resnapshot), and %s",
			h.Slot, cause, h.Slot, prevent),
		Err: errors.Join(ErrSlotInvalidated, ErrGap),
	}
}

// mib prints a byte count for a message: "unlimited" for a negative limit.
func mib(n int64) string {
	switch {
	case n < 0:
		return "unlimited"
	case n < 1<<20:
		return fmt.Sprintf("%d bytes", n)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// checkSlotHealth is Open's check of an existing slot: an invalidated slot
// stops the stream with its error, one at risk is logged.
func checkSlotHealth(ctx context.Context, conn Querier, cfg *Config) (Health, error) {
	h, err := SlotHealth(ctx, conn, cfg.Slot)
	if err != nil {
		return h, err
	}
	if err := h.Err(); err != nil {
		return h, err
	}
	if w := h.Warning(); w != "" {
		cfg.Logger.Warn(w, "slot", cfg.Slot, "wal_status", h.WALStatus, "retained_wal_bytes", h.RetainedBytes)
	}
	return h, nil
}

// slotWatch checks a stream's slot on an interval, on a connection of its
// own (the loop owns the stream's), keeping the latest Health for Stats
// readers and logging when the slot comes at risk or is invalidated.
type slotWatch struct {
	last   atomic.Pointer[Health]
	cancel context.CancelFunc
	done   chan struct{}
}

// warnEvery is how often a slot that stays at risk is warned about again.
const warnEvery = 5 * time.Minute

// startSlotWatch starts watching cfg.Slot every cfg.SlotCheckInterval
// (never when negative). first is Open's reading, if it made one.
func startSlotWatch(cfg *Config, first Health) *slotWatch {
	w := &slotWatch{done: make(chan struct{})}
	if first.Exists {
		w.last.Store(&first)
	}
	if cfg.SlotCheckInterval < 0 {
		close(w.done)
		w.cancel = func() {}
		return w
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() {
		defer close(w.done)
		w.run(ctx, cfg, first.AtRisk())
	}()
	return w
}

func (w *slotWatch) run(ctx context.Context, cfg *Config, atRisk bool) {
	log := cfg.Logger
	var warned time.Time
	if atRisk {
		warned = time.Now() // Open warned
	}
	invalidated := false
	t := time.NewTimer(0) // a first reading at once: a new slot has none
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(cfg.SlotCheckInterval)
		h, err := w.check(ctx, cfg)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("checking the replication slot's health", "slot", cfg.Slot, "err", err)
			}
			continue
		}
		if !h.Exists {
			continue // the stream itself fails and tells
		}
		w.last.Store(&h)
		switch {
		case h.Invalidated():
			// The server ends the walsender of a slot it invalidates; the
			// next Open stops with this same line.
			if !invalidated {
				log.Error(oneLineOf(h.Err()), "slot", cfg.Slot, "wal_status", h.WALStatus, "invalidation_reason", h.InvalidationReason)
			}
			invalidated = true
		case h.AtRisk():
			if warned.IsZero() || time.Since(warned) >= warnEvery {
				log.Warn(h.Warning(), "slot", cfg.Slot, "wal_status", h.WALStatus, "retained_wal_bytes", h.RetainedBytes, "safe_wal_size", h.SafeWALSize)
				warned = time.Now()
			}
		default:
			if !warned.IsZero() {
				log.Info("replication slot no longer at risk", "slot", cfg.Slot, "wal_status", h.WALStatus, "retained_wal_bytes", h.RetainedBytes)
			}
			warned = time.Time{}
		}
	}
}

func (w *slotWatch) check(ctx context.Context, cfg *Config) (Health, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := Connect(ctx, cfg.DSN)
	if err != nil {
		return Health{}, err
	}
	defer conn.Close(context.Background())
	return SlotHealth(ctx, conn, cfg.Slot)
}

// stop ends the watch and waits for it.
func (w *slotWatch) stop() {
	w.cancel()
	<-w.done
}

func oneLineOf(err error) string {
	var ue *UserError
	if errors.As(err, &ue) {
		return ue.Msg
	}
	return err.Error()
}

// Health returns the stream's slot as last checked (by Open, then every
// Config.SlotCheckInterval), and false before the first check.
func (s *Stream) Health() (Health, bool) {
	if s.slotWatch == nil {
		return Health{}, false
	}
	h := s.slotWatch.last.Load()
	if h == nil {
		return Health{}, false
	}
	return *h, true
}
