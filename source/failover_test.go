package source

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// TestFailoverSlot: Open creates a failover slot where the server has them
// (PostgreSQL 17+), a plain one when told not to, and refuses to create a
// failover slot on an older server rather than silently making a plain one.
func TestFailoverSlot(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "failover_slot")
	conn := pgtest.Connect(t, dsn)
	pgtest.Exec(t, conn, "CREATE TABLE t (id int PRIMARY KEY)")
	ctx := context.Background()
	var version int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		t.Fatal(err)
	}
	no, yes := false, true
	for _, c := range []struct {
		slot string
		want *bool
	}{{"fo_default", nil}, {"fo_off", &no}, {"fo_on", &yes}} {
		cfg := Config{DSN: dsn, Slot: c.slot, Create: true, Failover: c.want, SlotCheckInterval: -1}
		if c.want != nil && *c.want && version < FailoverVersion {
			octx, cancel := context.WithTimeout(ctx, 30*time.Second)
			s, err := Open(octx, cfg)
			cancel()
			var ue *UserError
			if err == nil {
				s.Close()
				t.Fatalf("PostgreSQL %d: Open with Failover true succeeded, want an error", version)
			} else if !errors.As(err, &ue) {
				t.Fatalf("PostgreSQL %d: Open with Failover true: %v, want a UserError", version, err)
			}
			continue
		}
		s := open(t, cfg)
		s.Close()
		h, err := SlotHealth(ctx, conn, c.slot)
		if err != nil {
			t.Fatal(err)
		}
		if version < FailoverVersion {
			if h.Failover != nil {
				t.Errorf("PostgreSQL %d: slot %s reports failover %v, want no column", version, c.slot, *h.Failover)
			}
			continue
		}
		want := c.want == nil || *c.want
		if h.Failover == nil || *h.Failover != want {
			t.Errorf("slot %s: failover = %s, want %v", c.slot, boolText(h.Failover), want)
		}
		if h.Synced == nil || *h.Synced {
			t.Errorf("slot %s on the primary: synced = %s, want false", c.slot, boolText(h.Synced))
		}
	}
}

func boolText(b *bool) string {
	if b == nil {
		return "not read"
	}
	if *b {
		return "true"
	}
	return "false"
}
