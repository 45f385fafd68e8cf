package checkpoint

import (
	"time"

	"github.com/pgfeed/pgfeed/event"
)

// Storage is what a pipeline needs from a checkpoint store. Store (a local
// bbolt file) and PGStore (a table in PostgreSQL, which two pgfeeds of an
// active/passive pair can both read) implement it with the same contract,
// checked by one conformance test:
//
//   - a write has reached stable storage when its method returns;
//   - a position is stored as given: the pipeline only ever stores what a
//     sink made durable, so a lower one (a replay, or a leader that lost
//     its lease writing late) means redelivery, never loss;
//   - reads of a source or sink never written are not errors (ok is false).
type Storage interface {
	Position(source, sink string) (lsn event.LSN, ok bool, err error)
	SetPosition(source, sink string, lsn event.LSN) error
	Progress(source, table string) (p Progress, ok bool, err error)
	SetProgress(source, table string, p Progress) error
	Server(source string) (srv Server, ok bool, err error)
	SetServer(source string, srv Server) error
	AddMark(source string, m Mark, keep Retention) error
	ConfirmableAt(source string, now time.Time, keep Retention, current event.LSN) (lsn event.LSN, ok bool, err error)
	ForgetSource(source string) error
	Close() error
}

var (
	_ Storage = (*Store)(nil)
	_ Storage = (*PGStore)(nil)
)
