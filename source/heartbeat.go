package source

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/pgfeed/pgfeed/event"
)

// HeartbeatPrefix is the prefix of the non-transactional logical messages
// that heartbeats write. Streams swallow them: they exist only to give an
// idle slot a position to confirm.
const HeartbeatPrefix = "pgfeed.heartbeat"

// DefaultHeartbeat is how often a stream considers writing a heartbeat
// when Config.Heartbeat is zero.
const DefaultHeartbeat = time.Minute

// heartbeat writes a heartbeat message when the slot would otherwise not
// advance: nothing is in flight to the consumer, the confirmed position has
// not moved since the last look, and the server's WAL has moved past it
// (on a database whose published tables are idle while the cluster writes,
// the slot holds that WAL back). A slot that advances by itself (changes
// acked, or keepalives confirming the server's end) costs no write at all.
type heartbeat struct {
	cfg     *Config
	tracker *tracker
	last    event.LSN    // confirmed position at the last look
	written atomic.Int64 // heartbeats written
	done    chan struct{}
	failed  string // the last error logged, so that a lasting one is logged once
}

func (h *heartbeat) run(ctx context.Context) {
	t := time.NewTicker(h.cfg.Heartbeat)
	defer t.Stop()
	h.last = h.tracker.position()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.tick(ctx)
	}
}

// tick looks once and writes a heartbeat if the slot needs one.
func (h *heartbeat) tick(ctx context.Context) bool {
	confirmed := h.tracker.position()
	moved := confirmed != h.last
	h.last = confirmed
	if moved || !h.tracker.idle() {
		return false
	}
	wrote, err := writeHeartbeat(ctx, h.cfg.DSN, confirmed)
	if err != nil {
		if ctx.Err() == nil && err.Error() != h.failed {
			h.cfg.Logger.Warn("writing a heartbeat (the slot may hold back WAL while its tables are idle)", "slot", h.cfg.Slot, "err", err)
		}
		h.failed = err.Error()
		return false
	}
	h.failed = ""
	if wrote {
		h.written.Add(1)
	}
	return wrote
}

// writeHeartbeat emits the message when the server's WAL is past confirmed.
// A standby (logical decoding on a standby) cannot write: it is skipped.
// The CASE keeps the order of the checks, since pg_current_wal_lsn fails
// during recovery.
func writeHeartbeat(ctx context.Context, dsn string, confirmed event.LSN) (bool, error) {
	conn, err := Connect(ctx, dsn)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.Background())
	var at *string
	err = conn.QueryRow(ctx, `SELECT CASE
		WHEN pg_is_in_recovery() THEN NULL
		WHEN pg_current_wal_lsn() > $2::pg_lsn THEN pg_logical_emit_message(false, $1, '')::text
	END`, HeartbeatPrefix, confirmed.String()).Scan(&at)
	return at != nil, err
}
