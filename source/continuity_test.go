package source

import (
	"errors"
	"strings"
	"testing"

	"github.com/pgfeed/pgfeed/event"
)

// Item 8 of "nothing lost": which servers a checkpoint may go on against.
func TestCheckContinuity(t *testing.T) {
	history := parseTimelineHistory([]byte("1\t0/3000000\tno recovery target specified\n\n2\t0/5000000\tafter promotion\n"))
	if history[1] != 0x3000000 || history[2] != 0x5000000 {
		t.Fatalf("timeline history: %v", history)
	}
	on3 := Identity{SystemID: "7", Timeline: 3, WALEnd: 0x9000000, forks: history}
	cases := []struct {
		name      string
		id        Identity
		system    string
		timeline  int32
		delivered event.LSN
		refusal   string // empty: may go on
	}{
		{"same server", Identity{SystemID: "7", Timeline: 1, WALEnd: 0x4000000}, "7", 1, 0x3500000, ""},
		{"first start", Identity{SystemID: "7", Timeline: 1, WALEnd: 0x10}, "", 0, 0, ""},
		{"another cluster", Identity{SystemID: "8", Timeline: 1, WALEnd: 0x4000000}, "7", 1, 0x100, "written against PostgreSQL system 7"},
		{"restored backup behind the checkpoint", Identity{SystemID: "7", Timeline: 1, WALEnd: 0x2000000}, "7", 1, 0x3500000, "restored from a backup"},
		{"promoted standby, fork after the checkpoint", on3, "7", 2, 0x4000000, ""},
		{"promoted twice, fork after the checkpoint", on3, "7", 1, 0x2000000, ""},
		{"fork before the checkpoint", on3, "7", 1, 0x3500000, "forked from timeline 1 at 0/3000000"},
		{"timeline not in the history", Identity{SystemID: "7", Timeline: 3, WALEnd: 0x9000000, forks: map[int32]event.LSN{2: 0x5000000}}, "7", 1, 0x100, "not in the history"},
		{"older timeline than the checkpoint", Identity{SystemID: "7", Timeline: 1, WALEnd: 0x9000000}, "7", 2, 0x100, "behind timeline 2"},
	}
	for _, c := range cases {
		err := CheckContinuity(c.id, c.system, c.timeline, c.delivered)
		switch {
		case c.refusal == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.refusal != "" && (err == nil || !errors.Is(err, ErrGap) || !strings.Contains(err.Error(), c.refusal) || !strings.Contains(err.Error(), "--resnapshot")):
			t.Errorf("%s: want a refusal with %q and the way out, got %v", c.name, c.refusal, err)
		}
	}
}
