package source

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgfeed/pgfeed/event"
)

// An initial snapshot is read once, when its slot is created, and the slot
// cannot export it again. Whether it reached the consumer is kept beside
// the slot, in the source database (SnapshotTable), so that any process
// that opens the slot knows: a snapshot that was interrupted (the process
// killed, PostgreSQL crashed, the network cut) is read again from a new
// slot, whoever opens it next, instead of being silently skipped.

// SnapshotTable records the initial snapshot of each slot: pending from
// before the slot is created until the consumer acked its last row.
const SnapshotTable = OwnSchema + ".snapshots"

// ensureOwnTables creates pgfeed's schema and its tables in the source
// database, readable and writable by the stream's role only.
func ensureOwnTables(ctx context.Context, conn *pgx.Conn) error {
	for _, stmt := range []string{
		"CREATE SCHEMA IF NOT EXISTS " + OwnSchema,
		`CREATE TABLE IF NOT EXISTS ` + RequestTable + ` (
			id bigserial PRIMARY KEY,
			slot text,
			tables text[] NOT NULL,
			requested_by name NOT NULL DEFAULT current_user,
			requested_at timestamptz NOT NULL DEFAULT now())`,
		"REVOKE ALL ON " + RequestTable + " FROM PUBLIC",
		`CREATE TABLE IF NOT EXISTS ` + SnapshotTable + ` (
			slot text PRIMARY KEY,
			consistent_point pg_lsn,
			done boolean NOT NULL DEFAULT false,
			started_at timestamptz NOT NULL DEFAULT now())`,
		"REVOKE ALL ON " + SnapshotTable + " FROM PUBLIC",
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return explainSQL(err, "preparing pgfeed's tables in schema "+OwnSchema+" (the role needs CREATE on the database, or create the schema for it)")
		}
	}
	return nil
}

// snapshotPending reports whether the initial snapshot of slot was started
// and never acked in full.
func snapshotPending(ctx context.Context, conn *pgx.Conn, slot string) (bool, error) {
	var done bool
	err := conn.QueryRow(ctx, "SELECT done FROM "+SnapshotTable+" WHERE slot = $1", slot).Scan(&done)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case isUndefinedTable(err):
		return false, nil // no snapshot was ever taken here
	case err != nil:
		return false, explainSQL(err, "reading the snapshot state of slot "+slot)
	}
	return !done, nil
}

// markSnapshot records the initial snapshot of slot as pending (before the
// slot is created) or done.
func markSnapshot(ctx context.Context, conn *pgx.Conn, slot string, at event.LSN, done bool) error {
	var point *string
	if at != 0 {
		s := at.String()
		point = &s
	}
	_, err := conn.Exec(ctx, `INSERT INTO `+SnapshotTable+` (slot, consistent_point, done) VALUES ($1, $2::pg_lsn, $3)
		ON CONFLICT (slot) DO UPDATE SET consistent_point = coalesce(excluded.consistent_point, `+SnapshotTable+`.consistent_point),
			done = excluded.done, started_at = CASE WHEN excluded.done THEN `+SnapshotTable+`.started_at ELSE now() END`, slot, point, done)
	if err != nil {
		return explainSQL(err, "recording the snapshot state of slot "+slot)
	}
	return nil
}

// ForgetSnapshot removes the snapshot state of a slot that was dropped, so
// that a new slot of that name does not inherit it.
func ForgetSnapshot(ctx context.Context, conn *pgx.Conn, slot string) error {
	_, err := conn.Exec(ctx, "DELETE FROM "+SnapshotTable+" WHERE slot = $1", slot)
	if err != nil && !isUndefinedTable(err) {
		return explainSQL(err, "forgetting the snapshot state of slot "+slot)
	}
	return nil
}

// snapshotDone is called once the consumer acked lsn: when it covers the
// end of an initial snapshot that was handed out in full, the snapshot is
// recorded as done.
func (s *Stream) snapshotDone(lsn event.LSN) {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	s.snapAcked = max(s.snapAcked, lsn)
	if s.snapAt == 0 || !s.snapEnded || s.snapAcked < s.snapAt {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := Connect(ctx, s.cfg.DSN)
	if err == nil {
		err = markSnapshot(ctx, conn, s.cfg.Slot, s.snapAt, true)
		conn.Close(ctx)
	}
	if err != nil {
		// Not fatal: the next Open reads the snapshot again (duplicates,
		// never a gap), and a later ack tries again.
		s.log.Warn("recording the end of the initial snapshot", "slot", s.cfg.Slot, "err", err)
		return
	}
	s.log.Info("initial snapshot acked in full", "slot", s.cfg.Slot, "at", s.snapAt)
	s.snapAt = 0
}

// isUndefinedTable reports an error for a missing table or schema.
func isUndefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000")
}
