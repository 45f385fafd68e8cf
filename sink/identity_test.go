package sink

import (
	"testing"

	"github.com/pgfeed/pgfeed/event"
)

func TestIdentity(t *testing.T) {
	for _, tc := range []struct {
		rec  Record
		want string
	}{
		{Record{Source: "main", Event: &event.Event{Op: event.OpUpdate, Schema: "public", Table: "t", CommitLSN: 0x16B37A0, Seq: 2}}, "main:0/16B37A0:2"},
		{Record{Event: &event.Event{Op: event.OpInsert, CommitLSN: 0x10, Seq: 1}}, "0/10:1"},
		// Snapshot rows share a position and count seq per table.
		{Record{Source: "main", Event: &event.Event{Op: event.OpRead, Schema: "public", Table: "a", CommitLSN: 0x5000, LSN: 0x5000, Seq: 7}}, "main:0/5000:7:read:public.a"},
		{Record{Source: "main", Event: &event.Event{Op: event.OpRead, Schema: "public", Table: "b", CommitLSN: 0x5000, LSN: 0x5000, Seq: 7}}, "main:0/5000:7:read:public.b"},
		{Record{Source: "main", Event: &event.Event{Op: event.OpSchema, Schema: "s", Table: "t", CommitLSN: 0x20}}, "main:0/20:0:schema:s.t"},
		{Record{Source: "main"}, ""},
	} {
		if got := Identity(tc.rec); got != tc.want {
			t.Errorf("Identity(%+v) = %q; want %q", tc.rec.Event, got, tc.want)
		}
	}
}
