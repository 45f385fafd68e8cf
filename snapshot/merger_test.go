package snapshot

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/event"
)

// A hand-made table t(id int, v text) keyed by id.
var (
	testRel = &event.Relation{Schema: "public", Table: "t", Columns: []event.Column{
		{Name: "id", Type: event.BuiltinType(23), Key: true},
		{Name: "v", Type: event.BuiltinType(25)},
	}}
	testTable = &Table{Rel: testRel, Key: []int{0}}
)

func row(id int, v string) event.Row {
	return event.Row{{State: event.Text, Raw: []byte(strconv.Itoa(id))}, {State: event.Text, Raw: []byte(v)}}
}

func keyRow(id int) event.Row {
	return event.Row{{State: event.Text, Raw: []byte(strconv.Itoa(id))}, {State: event.Absent}}
}

func change(op event.Op, lsn event.LSN, before, after event.Row) *event.Event {
	return &event.Event{Op: op, Schema: "public", Table: "t", Rel: testRel, LSN: lsn, CommitLSN: lsn, Before: before, After: after}
}

func watermark(backfill string, chunk int, kind string, lsn event.LSN) *event.Event {
	wm := Watermark{Backfill: backfill, Schema: "public", Table: "t", Chunk: chunk, Kind: kind}
	if kind == WatermarkLow {
		wm.Key = []string{"id"}
	}
	content, _ := json.Marshal(wm)
	return &event.Event{Op: event.OpMessage, LSN: lsn, CommitLSN: lsn + 8, XID: 77,
		Message: &event.Message{Prefix: WatermarkPrefix, Content: content, Transactional: true}}
}

// state applies delivered events the way a consumer keyed by id would.
type state map[string]string

func (s state) apply(t *testing.T, evs []*event.Event) {
	t.Helper()
	for _, e := range evs {
		switch e.Op {
		case event.OpInsert, event.OpUpdate, event.OpRead:
			if e.Before != nil && string(e.Before[0].Raw) != string(e.After[0].Raw) {
				delete(s, string(e.Before[0].Raw))
			}
			s[string(e.After[0].Raw)] = string(e.After[1].Raw)
		case event.OpDelete:
			delete(s, string(e.Before[0].Raw))
		case event.OpTruncate:
			clear(s)
		}
	}
}

func observeAll(m *Merger, evs ...*event.Event) []*event.Event {
	var out []*event.Event
	for _, e := range evs {
		out = append(out, m.Observe(e)...)
	}
	return out
}

func TestMergerWindow(t *testing.T) {
	m := NewMerger()
	m.Expect("b1") // the run is live: its walker registered it
	c := newChunk("b1", testTable, 1, []event.Row{row(1, "a"), row(2, "a"), row(3, "a"), row(4, "a"), row(5, "a"), row(7, "a")})
	low := watermark("b1", 1, WatermarkLow, 100)
	out := observeAll(m, low,
		change(event.OpUpdate, 110, nil, row(2, "b")),       // updated in the window
		change(event.OpDelete, 120, keyRow(3), nil),         // deleted in the window
		change(event.OpInsert, 130, nil, row(4, "a")),       // inserted in the window and read by the chunk
		change(event.OpUpdate, 135, keyRow(7), row(8, "a")), // key changed: old and new key are both touched
	)
	if len(out) != 4 {
		t.Fatalf("the watermark must be swallowed and changes passed: %d events", len(out))
	}
	if err := m.AddChunk(c); err != nil {
		t.Fatal(err)
	}
	hw := watermark("b1", 1, WatermarkHigh, 140)
	hw.CommitTime = time.Date(2026, 11, 23, 4, 56, 29, 0, time.UTC)
	released := observeAll(m, hw)
	var ids []string
	for _, e := range released {
		ids = append(ids, string(e.After[0].Raw))
		if e.Op != event.OpRead || e.LSN != 140 || e.CommitLSN != 148 || e.XID != 77 || !e.CommitTime.Equal(hw.CommitTime) || e.Rel != testRel {
			t.Errorf("released event %+v", e)
		}
	}
	if fmt.Sprint(ids) != "[1 5]" || released[0].Seq != 1 || released[1].Seq != 5 {
		t.Fatalf("released %v (seq %d, %d), want rows 1 and 5 at their row numbers", ids, released[0].Seq, released[1].Seq)
	}

	// A change after the high watermark comes after the released row and
	// overwrites it.
	s := state{}
	s.apply(t, out)
	s.apply(t, released)
	s.apply(t, observeAll(m, change(event.OpUpdate, 150, nil, row(1, "newer"))))
	want := state{"1": "newer", "2": "b", "4": "a", "5": "a", "8": "a"}
	if !maps.Equal(s, want) {
		t.Errorf("state %v, want %v", s, want)
	}

	// The chunk completes only once its rows are durable.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Wait(ctx); err == nil {
		t.Fatal("chunk complete before its rows were acked")
	}
	m.Ack(147)
	select {
	case <-c.doneChan():
		t.Fatal("chunk complete before its position was acked")
	default:
	}
	m.Ack(148)
	res, err := c.Wait(context.Background())
	if err != nil || res != (ChunkResult{Released: 2, Position: 148}) {
		t.Fatalf("result %+v, %v", res, err)
	}
}

func TestMergerEdges(t *testing.T) {
	t.Run("truncate in the window releases nothing", func(t *testing.T) {
		m := NewMerger()
		m.Expect("b") // the run is live: its walker registered it
		c := newChunk("b", testTable, 1, []event.Row{row(1, "a")})
		m.AddChunk(c)
		tr := &event.Event{Op: event.OpTruncate, Schema: "public", Table: "t", Rel: testRel}
		out := observeAll(m, watermark("b", 1, WatermarkLow, 1), tr, watermark("b", 1, WatermarkHigh, 2))
		if len(out) != 1 || out[0] != tr {
			t.Fatalf("out %v", out)
		}
		if res, _ := c.Wait(context.Background()); res.Released != 0 || res.Retry {
			t.Fatalf("result %+v", res)
		}
	})
	t.Run("a change without the key forces a retry", func(t *testing.T) {
		m := NewMerger()
		m.Expect("b") // the run is live: its walker registered it
		c := newChunk("b", testTable, 1, []event.Row{row(1, "a")})
		m.AddChunk(c)
		out := observeAll(m, watermark("b", 1, WatermarkLow, 1), change(event.OpDelete, 2, nil, nil), watermark("b", 1, WatermarkHigh, 3))
		if len(out) != 1 {
			t.Fatalf("out %v", out)
		}
		if res, _ := c.Wait(context.Background()); !res.Retry {
			t.Fatalf("result %+v", res)
		}
	})
	t.Run("a window not seen from its low watermark forces a retry", func(t *testing.T) {
		m := NewMerger()
		m.Expect("b") // the run is live: its walker registered it
		c := newChunk("b", testTable, 1, []event.Row{row(1, "a")})
		m.AddChunk(c)
		if out := observeAll(m, watermark("b", 1, WatermarkHigh, 3)); len(out) != 0 {
			t.Fatalf("out %v", out)
		}
		if res, _ := c.Wait(context.Background()); !res.Retry {
			t.Fatalf("result %+v", res)
		}
	})
	t.Run("a new run's low watermark retires a stale chunk and window", func(t *testing.T) {
		m := NewMerger()
		stale := newChunk("old", testTable, 3, []event.Row{row(1, "a")})
		m.AddChunk(stale)
		observeAll(m, watermark("old", 3, WatermarkLow, 1))
		fresh := newChunk("new", testTable, 1, []event.Row{row(1, "b")})
		m.AddChunk(fresh) // the stream runs behind: the chunk comes before its low watermark
		out := observeAll(m, watermark("new", 1, WatermarkLow, 2), change(event.OpUpdate, 3, nil, row(1, "c")))
		if res, _ := stale.Wait(context.Background()); !res.Retry {
			t.Fatalf("stale result %+v", res)
		}
		out = append(out, observeAll(m, watermark("old", 3, WatermarkHigh, 4), watermark("new", 1, WatermarkHigh, 5))...)
		if len(out) != 1 || out[0].Op != event.OpUpdate {
			t.Fatalf("out %v", out)
		}
		if res, _ := fresh.Wait(context.Background()); res.Released != 0 || res.Retry {
			t.Fatalf("fresh result %+v", res)
		}
		if len(m.windows) != 0 || len(m.chunks) != 0 {
			t.Fatalf("left behind: %d windows, %d chunks", len(m.windows), len(m.chunks))
		}
	})
	t.Run("watermarks of a dead run, replayed from the WAL, leave a live run alone", func(t *testing.T) {
		m := NewMerger()
		m.Expect("live")
		live := newChunk("live", testTable, 1, []event.Row{row(1, "a")})
		m.AddChunk(live) // the stream replays old WAL: it runs behind the live walker
		out := observeAll(m, watermark("dead", 7, WatermarkLow, 1), change(event.OpUpdate, 2, nil, row(5, "x")),
			watermark("live", 1, WatermarkLow, 3), watermark("live", 1, WatermarkHigh, 4))
		m.Ack(4 + 8) // the high watermark's commit position
		if res, _ := live.Wait(context.Background()); res.Retry || res.Released != 1 {
			t.Fatalf("live chunk result %+v: a dead run's watermark interfered", res)
		}
		if len(out) != 2 || out[0].Op != event.OpUpdate || out[1].Op != event.OpRead {
			t.Fatalf("out %v", out)
		}
		if len(m.windows) != 0 {
			t.Fatalf("a dead run left %d windows open", len(m.windows))
		}
	})
	t.Run("other messages and tables pass through", func(t *testing.T) {
		m := NewMerger()
		m.Expect("b") // the run is live: its walker registered it
		m.AddChunk(newChunk("b", testTable, 1, []event.Row{row(1, "a")}))
		bad := &event.Event{Op: event.OpMessage, Message: &event.Message{Prefix: WatermarkPrefix, Content: []byte("{")}}
		other := &event.Event{Op: event.OpMessage, Message: &event.Message{Prefix: "app", Content: []byte("x")}}
		otherTable := &event.Event{Op: event.OpUpdate, Schema: "public", Table: "u", Rel: &event.Relation{Schema: "public", Table: "u"}, After: event.Row{}}
		out := observeAll(m, watermark("b", 1, WatermarkLow, 1), bad, other, otherTable, watermark("b", 1, WatermarkHigh, 2))
		if len(out) != 4 || out[0] != bad || out[1] != other || out[2] != otherTable || out[3].Op != event.OpRead {
			t.Fatalf("out %v", out)
		}
	})
	t.Run("key columns found by name in the stream's relation", func(t *testing.T) {
		m := NewMerger()
		m.Expect("b") // the run is live: its walker registered it
		c := newChunk("b", testTable, 1, []event.Row{row(1, "a"), row(2, "a")})
		m.AddChunk(c)
		swapped := &event.Relation{Schema: "public", Table: "t", Columns: []event.Column{{Name: "v"}, {Name: "id", Key: true}}}
		upd := &event.Event{Op: event.OpUpdate, Schema: "public", Table: "t", Rel: swapped,
			After: event.Row{{State: event.Text, Raw: []byte("b")}, {State: event.Text, Raw: []byte("2")}}}
		out := observeAll(m, watermark("b", 1, WatermarkLow, 1), upd, watermark("b", 1, WatermarkHigh, 2))
		if len(out) != 2 || string(out[1].After[0].Raw) != "1" {
			t.Fatalf("out %v", out)
		}
	})
}

// The merge, checked as a property: a simulated table under random inserts,
// updates (some changing the key) and deletes, walked in chunks read at a
// random point of their window, with the stream running up to a chunk
// behind the walker. Applying what the Merger delivers must give the table.
func TestMergerStateInvariant(t *testing.T) {
	for seed := uint64(1); seed <= 300; seed++ {
		mergeSimulation(t, seed)
	}
}

func mergeSimulation(t *testing.T, seed uint64) {
	rnd := rand.New(rand.NewPCG(seed, seed))
	db := map[int]string{}
	nextID := 1
	for ; nextID <= 40; nextID++ {
		if rnd.IntN(4) > 0 {
			db[nextID] = "v0"
		}
	}
	var lsn event.LSN
	var pending []*event.Event // written, not yet seen by the stream
	// Writers add rows past the walker's end; after a while they only
	// update and delete, so that the walk reaches the end of the table.
	growing := true
	write := func() {
		lsn += 10
		ids := slices.Sorted(maps.Keys(db))
		if len(ids) == 0 && !growing {
			return
		}
		op := rnd.IntN(10)
		if !growing && (op < 3 || op == 7) {
			op = 5
		}
		switch {
		case op < 3 || len(ids) == 0:
			id := nextID
			if rnd.IntN(2) == 0 {
				id = rnd.IntN(nextID + 5) // may land inside a chunk's range
			}
			if _, ok := db[id]; ok {
				return
			}
			nextID = max(nextID, id+1)
			db[id] = "i" + strconv.Itoa(int(lsn))
			pending = append(pending, change(event.OpInsert, lsn, nil, row(id, db[id])))
		case op < 7:
			id := ids[rnd.IntN(len(ids))]
			db[id] = "u" + strconv.Itoa(int(lsn))
			pending = append(pending, change(event.OpUpdate, lsn, nil, row(id, db[id])))
		case op < 8:
			id := ids[rnd.IntN(len(ids))]
			to := nextID + rnd.IntN(3)
			if _, ok := db[to]; ok {
				return
			}
			nextID = max(nextID, to+1)
			delete(db, id)
			db[to] = "k" + strconv.Itoa(int(lsn))
			pending = append(pending, change(event.OpUpdate, lsn, keyRow(id), row(to, db[to])))
		default:
			id := ids[rnd.IntN(len(ids))]
			delete(db, id)
			pending = append(pending, change(event.OpDelete, lsn, keyRow(id), nil))
		}
	}
	writes := func() {
		for n := rnd.IntN(4); n > 0; n-- {
			write()
		}
	}
	m := NewMerger()
	m.Expect("sim") // the run is live: its walker registered it
	got := state{}
	stream := func() {
		for _, e := range pending {
			got.apply(t, m.Observe(e))
			m.Ack(e.CommitLSN)
		}
		pending = nil
	}
	last, size := 0, 1+rnd.IntN(6)
	for chunk := 1; ; chunk++ {
		growing = chunk < 15
		writes()
		lsn += 10
		pending = append(pending, watermark("sim", chunk, WatermarkLow, lsn))
		if rnd.IntN(2) == 0 {
			stream()
		}
		writes()
		var rows []event.Row
		for _, id := range slices.Sorted(maps.Keys(db)) {
			if id > last && len(rows) < size {
				rows = append(rows, row(id, db[id]))
			}
		}
		c := newChunk("sim", testTable, chunk, rows)
		m.AddChunk(c)
		writes()
		lsn += 10
		pending = append(pending, watermark("sim", chunk, WatermarkHigh, lsn))
		if rnd.IntN(2) == 0 {
			writes()
		}
		stream()
		res, err := c.Wait(context.Background())
		if err != nil || res.Retry {
			t.Fatalf("seed %d chunk %d: %+v %v", seed, chunk, res, err)
		}
		if len(rows) < size {
			break
		}
		last, _ = strconv.Atoi(string(rows[len(rows)-1][0].Raw))
	}
	writes()
	stream()
	want := state{}
	for id, v := range db {
		want[strconv.Itoa(id)] = v
	}
	if !maps.Equal(got, want) {
		t.Fatalf("seed %d: consumer state\n%v\nwant\n%v", seed, got, want)
	}
}
