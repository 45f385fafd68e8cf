package source

import (
	"fmt"
	"sync"

	"github.com/pgfeed/pgfeed/event"
)

// tracker decides which position may be confirmed to Postgres. It records
// every transaction handed towards the consumer, in wire order, and the
// consumer's acks; the confirmed position is the end of the newest
// transaction that is acked and whose every predecessor is acked too.
//
// Acks name a commit_lsn; Postgres wants the end of the commit record (a
// transaction whose commit record starts before the confirmed position is
// skipped on restart), which the tracker learns from the Commit message.
type tracker struct {
	mu sync.Mutex
	// pending transactions, oldest first. end is 0 until the commit is seen.
	pending []txnMark
	// acked is the highest commit_lsn the consumer acked.
	acked event.LSN
	// delivered is the highest commit_lsn registered so far.
	delivered event.LSN
	// confirmed only moves forward; it starts at the slot's confirmed_flush_lsn.
	confirmed event.LSN
	// idleEnd is the server's WAL end seen when nothing was in flight: if
	// everything before it is acked, confirming it lets an idle slot advance.
	idleEnd event.LSN
	// openTxn counts transactions being received (Begin seen, Commit not
	// yet) and streamed transactions spooled but not yet committed.
	openTxn int
}

type txnMark struct {
	commit, end event.LSN
}

func newTracker(start event.LSN) *tracker {
	return &tracker{confirmed: start, acked: start, delivered: start}
}

// begin registers a transaction whose events are about to be delivered.
func (t *tracker) begin(commit event.LSN) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pending = append(t.pending, txnMark{commit: commit})
	if commit > t.delivered {
		t.delivered = commit
	}
	t.openTxn++
}

// commit records the end of the transaction registered by begin.
func (t *tracker) commit(commit, end event.LSN) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := len(t.pending) - 1; i >= 0; i-- {
		if t.pending[i].commit == commit && t.pending[i].end == 0 {
			t.pending[i].end = end
			break
		}
	}
	t.openTxn--
	t.advance()
}

// single registers a change outside any transaction (a non-transactional
// logical message). It is confirmed through the WAL end of later keepalives.
func (t *tracker) single(lsn event.LSN) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if lsn > t.delivered {
		t.delivered = lsn
	}
}

// streamOpened and streamClosed count spooled in-progress transactions,
// during which the server's WAL end says nothing safe about what we hold.
func (t *tracker) streamOpened() { t.mu.Lock(); t.openTxn++; t.mu.Unlock() }
func (t *tracker) streamClosed() { t.mu.Lock(); t.openTxn--; t.advance(); t.mu.Unlock() }

// serverEnd records the server's WAL end from a keepalive or data message.
// Everything committed before it has already been received, since the
// connection delivers in order.
func (t *tracker) serverEnd(end event.LSN) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.openTxn == 0 && end > t.idleEnd {
		t.idleEnd = end
	}
	t.advance()
}

// ack records that the consumer processed every event with commit_lsn <= lsn.
func (t *tracker) ack(lsn event.LSN) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if lsn > t.delivered {
		return fmt.Errorf("ack of position %s, which was never delivered (last delivered: %s)", lsn, t.delivered)
	}
	if lsn > t.acked {
		t.acked = lsn
		t.advance()
	}
	return nil
}

// advance moves confirmed over acked, completed transactions. Callers hold mu.
func (t *tracker) advance() {
	n := 0
	for n < len(t.pending) && t.pending[n].commit <= t.acked && t.pending[n].end != 0 {
		if t.pending[n].end > t.confirmed {
			t.confirmed = t.pending[n].end
		}
		n++
	}
	if n > 0 {
		t.pending = append(t.pending[:0], t.pending[n:]...)
	}
	if len(t.pending) == 0 && t.openTxn == 0 && t.acked >= t.delivered && t.idleEnd > t.confirmed {
		t.confirmed = t.idleEnd
	}
}

// idle reports whether nothing is in flight: every transaction received
// was acked and none is being received.
func (t *tracker) idle() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pending) == 0 && t.openTxn == 0 && t.acked >= t.delivered
}

// position returns the position that may be confirmed to Postgres.
func (t *tracker) position() event.LSN {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.confirmed
}
