package pipeline

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/internal/pgcluster"
	"github.com/pgfeed/pgfeed/internal/pgtest"
	"github.com/pgfeed/pgfeed/sink"
	"github.com/pgfeed/pgfeed/source"
)

// heldSink makes nothing durable until release is closed, so that the
// slot retains WAL.
type heldSink struct{ release chan struct{} }

func (s *heldSink) Write(ctx context.Context, _ []sink.Record) error {
	select {
	case <-s.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *heldSink) Close() error { return nil }

// A slot that falls behind max_slot_wal_keep_size shows in Status with a
// warning, and once a checkpoint invalidates it the pipeline stops with
// one line that names the way out.
func TestSlotInvalidatedStopsPipeline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Options{Settings: map[string]string{"max_slot_wal_keep_size": "1MB", "wal_keep_size": "0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Remove() })
	dsn := c.DSN("")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id serial PRIMARY KEY, pad text)")
	held := &heldSink{release: make(chan struct{})}
	p := &Pipeline{
		Sources: []Source{{Name: "main", Stream: source.Config{DSN: dsn, Slot: "held", Create: true, SlotCheckInterval: 50 * time.Millisecond}}},
		Sinks:   []Sink{newSink(t, "held", "main", held)},
		Store:   openStore(t), MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitSlot(t, db, "held")
	waitFor(t, "the slot at risk in Status", func() bool {
		pgtest.Exec(t, db, "INSERT INTO items (pad) SELECT repeat('x', 100) FROM generate_series(1, 100)", "SELECT pg_switch_wal()")
		st := p.Status().Sources[0]
		return st.Slot != nil && st.Slot.WALStatus == "unreserved" && !st.SlotOK()
	})
	if w := p.Status().Sources[0].SlotWarning; !strings.Contains(w, "max_slot_wal_keep_size") {
		t.Errorf("slot warning %q", w)
	}

	pgtest.Exec(t, db, "CHECKPOINT")
	close(held.release)
	select {
	case err = <-done:
	case <-ctx.Done():
		t.Fatal("the pipeline went on with an invalidated slot")
	}
	var ue *source.UserError
	if !errors.Is(err, source.ErrSlotInvalidated) || !errors.Is(err, source.ErrGap) || !errors.As(err, &ue) {
		t.Fatalf("Run: %v, want the invalidated slot's gap", err)
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, `replication slot "held" was invalidated`) || !strings.Contains(msg, "--resnapshot") {
		t.Errorf("error %q: want one line with the way out", msg)
	}
}
