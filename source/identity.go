package source

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pglogrepl"
	"github.com/pgfeed/pgfeed/event"
)

// ErrGap marks errors after which a stream cannot go on without skipping
// changes: a slot that vanished, a publication dropped under its slot, a
// server that is not the one the positions came from. Retrying does not
// help; the error's message says how to start over.
var ErrGap = errors.New("continuing would skip changes")

// Identity is the PostgreSQL cluster a DSN reaches, as IDENTIFY_SYSTEM
// tells it, with its timeline history.
type Identity struct {
	SystemID string
	Timeline int32
	// WALEnd is the server's current WAL flush position.
	WALEnd event.LSN
	// forks maps each earlier timeline of this server's history to the
	// position where it ended.
	forks map[int32]event.LSN
}

// Identify connects to dsn for replication and reads the server's
// identity and the history of its current timeline.
func Identify(ctx context.Context, dsn string) (Identity, error) {
	conn, err := connectReplication(ctx, dsn)
	if err != nil {
		return Identity{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	res, err := pglogrepl.IdentifySystem(ctx, conn)
	if err != nil {
		return Identity{}, explainSQL(err, "identifying the server")
	}
	id := Identity{SystemID: res.SystemID, Timeline: res.Timeline, WALEnd: event.LSN(res.XLogPos), forks: map[int32]event.LSN{}}
	if res.Timeline > 1 {
		hist, err := pglogrepl.TimelineHistory(ctx, conn, res.Timeline)
		if err != nil {
			return Identity{}, explainSQL(err, "reading the timeline history")
		}
		id.forks = parseTimelineHistory(hist.Content)
	}
	return id, nil
}

// parseTimelineHistory reads a timeline history file: one line per
// earlier timeline, "tli<TAB>switchpoint<TAB>reason". Lines it cannot read
// are skipped: a timeline missing from the map is treated as not an
// ancestor, which stops the stream rather than skipping changes.
func parseTimelineHistory(content []byte) map[int32]event.LSN {
	forks := map[int32]event.LSN{}
	sc := bufio.NewScanner(bytes.NewReader(content))
	for sc.Scan() {
		fields := bytes.Fields(sc.Bytes())
		if len(fields) < 2 || fields[0][0] == '#' {
			continue
		}
		tli, err := strconv.ParseInt(string(fields[0]), 10, 32)
		if err != nil {
			continue
		}
		lsn, err := event.ParseLSN(string(fields[1]))
		if err != nil {
			continue
		}
		forks[int32(tli)] = lsn
	}
	return forks
}

// CheckContinuity reports whether positions up to delivered, written
// against the cluster systemID on timeline, still mean the same changes
// on the server id describes. A promoted standby of that cluster (a later
// timeline that forked after delivered) does; another cluster, a restored
// backup behind what was delivered, or a timeline that forked before it
// do not: the error, wrapping ErrGap, says what happened and how to start
// over.
func CheckContinuity(id Identity, systemID string, timeline int32, delivered event.LSN) error {
	const startOver = "to start over against this server, run pgfeed run --resnapshot (drops what the checkpoint holds for this source, creates the slot again and reads every row)"
	switch {
	case systemID != "" && id.SystemID != systemID:
		return &UserError{Msg: fmt.Sprintf("the checkpoint was written against PostgreSQL system %s, but the DSN now reaches system %s (a new or restored cluster): its positions mean nothing there; %s", systemID, id.SystemID, startOver), Err: ErrGap}
	case id.WALEnd < delivered:
		return &UserError{Msg: fmt.Sprintf("the server's WAL ends at %s, before %s, which was already delivered: it was restored from a backup or is a lagging standby; point the DSN at the primary, or %s", id.WALEnd, delivered, startOver), Err: ErrGap}
	case timeline != 0 && id.Timeline < timeline:
		return &UserError{Msg: fmt.Sprintf("the server is on timeline %d, behind timeline %d of the checkpoint: it is not the server the positions came from; point the DSN at the current primary, or %s", id.Timeline, timeline, startOver), Err: ErrGap}
	case timeline != 0 && id.Timeline > timeline:
		fork, ok := id.forks[timeline]
		if !ok {
			return &UserError{Msg: fmt.Sprintf("timeline %d of the checkpoint is not in the history of the server's timeline %d: the server took another branch; %s", timeline, id.Timeline, startOver), Err: ErrGap}
		}
		if fork < delivered {
			return &UserError{Msg: fmt.Sprintf("the server's timeline %d forked from timeline %d at %s, before %s that was delivered: changes after the fork were lost with the old primary; %s", id.Timeline, timeline, fork, delivered, startOver), Err: ErrGap}
		}
	}
	return nil
}
