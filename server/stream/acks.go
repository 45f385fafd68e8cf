package stream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pgfeed/pgfeed/event"
)

// sentLog records the transactions sent to one client and not yet acked,
// oldest first, to turn the client's acks into acks of the stream and to
// refuse positions that were never sent. It bounds how many transactions a
// client may hold unacked: beyond that, sending waits (the slot waits too).
//
// wal2json clients ack a transaction's nextlsn, the end of its commit
// record; the stream's Ack takes commit LSNs. Other formats show the
// commit LSN (commit_lsn, the CloudEvents id, Debezium's source.sequence)
// and their clients ack that.
type sentLog struct {
	byEnd bool
	max   int

	mu    sync.Mutex
	txns  []sentTxn
	last  event.LSN     // highest position a client may ack
	acked event.LSN     // highest position the client acked
	bytes int64         // bytes of the frames of txns, sent and not acked
	room  chan struct{} // a token when acks free room
}

type sentTxn struct {
	commit, end event.LSN
	bytes       int64     // of its frames sent so far
	at          time.Time // when its first frame was sent
}

func newSentLog(byEnd bool, max int) *sentLog {
	return &sentLog{byEnd: byEnd, max: max, room: make(chan struct{}, 1)}
}

// begin registers a transaction whose first frame is about to be written,
// waiting while the client holds max transactions unacked.
func (l *sentLog) begin(ctx context.Context, commit event.LSN) error {
	for {
		l.mu.Lock()
		if len(l.txns) < l.max {
			l.txns = append(l.txns, sentTxn{commit: commit, at: time.Now()})
			l.mu.Unlock()
			return nil
		}
		l.mu.Unlock()
		select {
		case <-l.room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// skip registers a transaction that sends no frame (all its changes are
// of tables the client's token may not read, or it has none): it is acked
// with the next ack beyond it, or at once when the client acked everything
// before it, in which case skip returns its commit for the caller to ack.
// Without this, the slot could not advance over it.
func (l *sentLog) skip(ctx context.Context, commit, end event.LSN) (event.LSN, bool, error) {
	l.mu.Lock()
	if len(l.txns) == 0 {
		l.mu.Unlock()
		return commit, true, nil
	}
	l.mu.Unlock()
	if err := l.begin(ctx, commit); err != nil {
		return 0, false, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.txns); n > 0 && l.txns[n-1].commit == commit {
		l.txns[n-1].end = end
	}
	return 0, false, nil
}

// end records the end of the transaction begun last, before the frame that
// carries it (nextlsn) is written: the client may ack it from then on.
func (l *sentLog) end(commit, end event.LSN) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.txns); n > 0 && l.txns[n-1].commit == commit {
		l.txns[n-1].end = end
	}
	if l.byEnd && end > l.last {
		l.last = end
	}
}

// sending notes that a frame of the transaction at commit is about to be
// written: a client of a commit format may ack it from then on.
func (l *sentLog) sending(commit event.LSN) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.byEnd && commit > l.last {
		l.last = commit
	}
}

// errLagBytes ends reserve for a client that held more than its bound of
// bytes unacked, and acked nothing, for the whole wait.
var errLagBytes = errors.New("unacked bytes over the bound")

// reserve counts a frame of n bytes of the transaction begun last, about
// to be written. While the client holds more than max bytes unacked (0: no
// bound) in transactions before it, it waits for acks, for at most wait:
// then it returns errLagBytes and the bytes held. The transaction being
// sent never waits on itself, since it can be acked only once whole.
func (l *sentLog) reserve(ctx context.Context, n int, max int64, wait time.Duration) (int64, error) {
	var timeout <-chan time.Time
	for {
		l.mu.Lock()
		k := len(l.txns)
		var current int64
		if k > 0 {
			current = l.txns[k-1].bytes
		}
		if max <= 0 || l.bytes == current || l.bytes+int64(n) <= max {
			if k > 0 {
				l.txns[k-1].bytes += int64(n)
				l.bytes += int64(n)
			}
			l.mu.Unlock()
			return 0, nil
		}
		held := l.bytes
		l.mu.Unlock()
		if timeout == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-l.room:
		case <-timeout:
			return held, errLagBytes
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// oldest returns when the oldest transaction not yet acked was sent (zero:
// none waits).
func (l *sentLog) oldest() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, t := range l.txns {
		if t.end != 0 || !l.byEnd {
			return t.at
		}
	}
	return time.Time{}
}

// ack takes the client's ack of pos and returns the commit LSN to ack on
// the stream (zero: nothing new). A position beyond what was sent is an
// error and changes nothing.
func (l *sentLog) ack(pos event.LSN) (event.LSN, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if pos > l.last {
		what := "commit_lsn"
		if l.byEnd {
			what = "nextlsn"
		}
		if l.last == 0 {
			return 0, fmt.Errorf("ack of position %s, which was never sent: nothing was sent yet on this connection; ack the %s of a frame you received", pos, what)
		}
		return 0, fmt.Errorf("ack of position %s, which was never sent: the last %s sent is %s", pos, what, l.last)
	}
	var commit event.LSN
	n := 0
	for n < len(l.txns) {
		t := l.txns[n]
		if l.byEnd && (t.end == 0 || t.end > pos) || !l.byEnd && t.commit > pos {
			break
		}
		commit = t.commit
		l.bytes -= t.bytes
		n++
	}
	if !l.byEnd && pos > l.acked {
		commit = pos
	}
	if pos > l.acked {
		l.acked = pos
	}
	if n > 0 {
		l.txns = append(l.txns[:0], l.txns[n:]...)
		select {
		case l.room <- struct{}{}:
		default:
		}
	}
	return commit, nil
}
