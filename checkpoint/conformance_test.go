package checkpoint

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// storage is one implementation under test: open opens the same store
// again (a restart), so that durability across Close is checked too.
type storage struct {
	name string
	new  func(t *testing.T) (open func() Storage)
}

func implementations() []storage {
	return []storage{
		{"bbolt", func(t *testing.T) func() Storage {
			path := filepath.Join(t.TempDir(), "checkpoint.db")
			return func() Storage {
				s, err := Open(path)
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
		}},
		{"postgres", func(t *testing.T) func() Storage {
			dsn := pgtest.CreateDB(t, pg, strings.ToLower(strings.NewReplacer("/", "_", "-", "_").Replace(t.Name())))
			return func() Storage {
				s, err := OpenPG(context.Background(), dsn)
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
		}},
	}
}

// forEach runs fn against a fresh store of each implementation.
func forEach(t *testing.T, fn func(t *testing.T, open func() Storage)) {
	for _, impl := range implementations() {
		t.Run(impl.name, func(t *testing.T) { fn(t, impl.new(t)) })
	}
}

func openOnce(t *testing.T, open func() Storage) Storage {
	s := open()
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformancePositions(t *testing.T) {
	forEach(t, func(t *testing.T, open func() Storage) {
		s := open()
		if _, ok, err := s.Position("slot1", "kafka"); err != nil || ok {
			t.Fatalf("Position on empty store = ok %v, err %v; want not ok, nil", ok, err)
		}
		// Stored as given, also lower (a replay rewinds on purpose).
		for _, lsn := range []event.LSN{0x16B3748, 0x1_0000_0000, 0x10} {
			must(t, s.SetPosition("slot1", "kafka", lsn))
			if got, ok, err := s.Position("slot1", "kafka"); err != nil || !ok || got != lsn {
				t.Fatalf("Position = %s, %v, %v; want %s", got, ok, err, lsn)
			}
		}
		must(t, s.SetPosition("slot1", "file", 0x20))
		must(t, s.SetPosition("slot2", "kafka", 0x30))
		if _, ok, _ := s.Position("slot2", "file"); ok {
			t.Error("position leaked to another source")
		}
		if err := s.SetPosition("", "kafka", 1); err == nil {
			t.Error("SetPosition with an empty source: want an error")
		}
		if err := s.SetPosition("slot1", "", 1); err == nil {
			t.Error("SetPosition with an empty sink: want an error")
		}
		must(t, s.Close())

		// Durable: a new process reads what the last one stored.
		s = openOnce(t, open)
		for _, c := range []struct {
			source, sink string
			want         event.LSN
		}{{"slot1", "kafka", 0x10}, {"slot1", "file", 0x20}, {"slot2", "kafka", 0x30}} {
			if got, ok, err := s.Position(c.source, c.sink); err != nil || !ok || got != c.want {
				t.Errorf("after reopening, Position(%s, %s) = %s, %v, %v; want %s", c.source, c.sink, got, ok, err, c.want)
			}
		}
	})
}

func TestConformanceConcurrentWriters(t *testing.T) {
	forEach(t, func(t *testing.T, open func() Storage) {
		s := openOnce(t, open)
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				sink := fmt.Sprintf("sink%d", w)
				for i := 1; i <= 50; i++ {
					if err := s.SetPosition("slot", sink, event.LSN(i)); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		for w := range 4 {
			if got, ok, err := s.Position("slot", fmt.Sprintf("sink%d", w)); got != 50 || !ok || err != nil {
				t.Errorf("sink%d: Position = %s, %v, %v; want 0/32", w, got, ok, err)
			}
		}
	})
}

func TestConformanceProgressAndServer(t *testing.T) {
	forEach(t, func(t *testing.T, open func() Storage) {
		s := open()
		if _, ok, err := s.Progress("slot", "public.t"); ok || err != nil {
			t.Fatalf("Progress on empty store = %v, %v", ok, err)
		}
		at := time.Date(2026, 11, 23, 4, 56, 29, 368123000, time.UTC)
		p := Progress{LastKey: []byte(`{"id":7}`), Rows: 7, UpdatedAt: at}
		must(t, s.SetProgress("slot", "public.t", p))
		must(t, s.SetProgress("slot", "public.u", Progress{Rows: 1, Done: true}))
		if err := s.SetProgress("slot", "", p); err == nil {
			t.Error("SetProgress with an empty table: want an error")
		}
		if _, ok, err := s.Server("slot"); ok || err != nil {
			t.Fatalf("Server on empty store = %v, %v", ok, err)
		}
		srv := Server{SystemID: "7400000000000000001", Timeline: 3, Slot: "pgfeed_slot"}
		must(t, s.SetServer("slot", srv))
		must(t, s.Close())

		s = openOnce(t, open)
		got, ok, err := s.Progress("slot", "public.t")
		if err != nil || !ok || string(got.LastKey) != string(p.LastKey) || got.Rows != 7 || got.Done || !got.UpdatedAt.Equal(at) {
			t.Errorf("Progress = %+v, %v, %v; want %+v", got, ok, err, p)
		}
		if got, ok, _ := s.Progress("slot", "public.u"); !ok || !got.Done || got.UpdatedAt.IsZero() {
			t.Errorf("Progress(public.u) = %+v, %v; want done, with the time it was stored", got, ok)
		}
		if got, ok, err := s.Server("slot"); err != nil || !ok || got != srv {
			t.Errorf("Server = %+v, %v, %v; want %+v", got, ok, err, srv)
		}
	})
}

func TestConformanceMarks(t *testing.T) {
	forEach(t, func(t *testing.T, open func() Storage) {
		s := openOnce(t, open)
		marks := func() []Mark {
			t.Helper()
			// Marks is not part of Storage (the pipeline never lists
			// them), but both stores have it.
			m, err := s.(interface{ Marks(string) ([]Mark, error) }).Marks("slot")
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
		keep := Retention{Age: 10 * time.Second}
		add := func(at time.Duration, lsn event.LSN) {
			t.Helper()
			must(t, s.AddMark("slot", Mark{At: t0.Add(at), LSN: lsn}, keep))
		}
		add(0, 100)
		add(500*time.Millisecond, 150) // within MarkInterval: dropped
		add(2*time.Second, 100)        // no progress: dropped
		add(-time.Second, 300)         // clock stepped back: dropped
		add(5*time.Second, 200)
		add(10*time.Second, 300)
		add(16*time.Second, 400) // prunes the mark at t0
		want := []Mark{{t0.Add(5 * time.Second), 200}, {t0.Add(10 * time.Second), 300}, {t0.Add(16 * time.Second), 400}}
		if got := marks(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("marks = %v\nwant    %v", got, want)
		}
		if lsn, ok, err := s.ConfirmableAt("slot", t0.Add(16*time.Second), keep, 400); lsn != 200 || !ok || err != nil {
			t.Errorf("ConfirmableAt = %s, %v, %v; want 0/C8, true", lsn, ok, err)
		}
		if _, ok, err := s.ConfirmableAt("slot", t0.Add(14*time.Second), keep, 400); ok || err != nil {
			t.Errorf("ConfirmableAt before the window filled: ok %v, err %v; want not ok", ok, err)
		}
		if lsn, ok, err := s.ConfirmableAt("slot", t0, Retention{}, 400); lsn != 400 || !ok || err != nil {
			t.Errorf("ConfirmableAt without retention = %s, %v, %v; want the current position", lsn, ok, err)
		}
		// Without an age window only the newest mark stays.
		must(t, s.AddMark("slot", Mark{At: t0.Add(20 * time.Second), LSN: 500}, Retention{Bytes: 1 << 20}))
		if got := marks(); fmt.Sprint(got) != fmt.Sprint([]Mark{{t0.Add(20 * time.Second), 500}}) {
			t.Errorf("marks without an age window = %v; want only the newest", got)
		}
	})
}

func TestConformanceForgetSource(t *testing.T) {
	forEach(t, func(t *testing.T, open func() Storage) {
		s := openOnce(t, open)
		for _, src := range []string{"gone", "kept"} {
			must(t, s.SetPosition(src, "file", 0x40))
			must(t, s.SetProgress(src, "public.t", Progress{Rows: 1}))
			must(t, s.SetServer(src, Server{SystemID: "1", Timeline: 1}))
			must(t, s.AddMark(src, Mark{At: t0, LSN: 0x40}, Retention{}))
		}
		must(t, s.ForgetSource("gone"))
		must(t, s.ForgetSource("never-stored"))
		if _, ok, _ := s.Position("gone", "file"); ok {
			t.Error("position survived ForgetSource")
		}
		if _, ok, _ := s.Progress("gone", "public.t"); ok {
			t.Error("progress survived ForgetSource")
		}
		if _, ok, _ := s.Server("gone"); ok {
			t.Error("server survived ForgetSource")
		}
		if lsn, ok, _ := s.Position("kept", "file"); !ok || lsn != 0x40 {
			t.Error("ForgetSource removed another source's position")
		}
		if _, ok, _ := s.Server("kept"); !ok {
			t.Error("ForgetSource removed another source's server")
		}
	})
}
