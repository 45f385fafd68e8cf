package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/event"
)

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "checkpoint.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestPositionRoundTrip(t *testing.T) {
	s, _ := openTemp(t)
	if _, ok, err := s.Position("slot1", "kafka"); err != nil || ok {
		t.Fatalf("Position on empty store = ok %v, err %v; want not ok, nil", ok, err)
	}
	for _, lsn := range []event.LSN{0x16B3748, 0x1_0000_0000, 0x10} { // the last one moves back, on purpose
		if err := s.SetPosition("slot1", "kafka", lsn); err != nil {
			t.Fatal(err)
		}
		got, ok, err := s.Position("slot1", "kafka")
		if err != nil || !ok || got != lsn {
			t.Fatalf("Position = %s, %v, %v; want %s, true, nil", got, ok, err, lsn)
		}
	}
	// Positions are per source and per sink.
	if _, ok, _ := s.Position("slot2", "kafka"); ok {
		t.Error("position leaked to another source")
	}
	if _, ok, _ := s.Position("slot1", "file"); ok {
		t.Error("position leaked to another sink")
	}
}

func TestEmptyNamesRejected(t *testing.T) {
	s, _ := openTemp(t)
	if err := s.SetPosition("", "kafka", 1); err == nil {
		t.Error("SetPosition with empty source: want error")
	}
	if err := s.SetPosition("slot", "", 1); err == nil {
		t.Error("SetPosition with empty sink: want error")
	}
	if err := s.SetProgress("slot", "", Progress{}); err == nil {
		t.Error("SetProgress with empty table: want error")
	}
	if err := s.AddMark("", Mark{At: time.Now(), LSN: 1}, Retention{}); err == nil {
		t.Error("AddMark with empty source: want error")
	}
}

func TestLowest(t *testing.T) {
	s, _ := openTemp(t)
	must(t, s.SetPosition("slot", "file", 300))
	must(t, s.SetPosition("slot", "kafka", 200))
	must(t, s.SetPosition("slot", "nats", 400))
	must(t, s.SetPosition("other", "webhook", 1)) // another source must not count
	tests := []struct {
		name  string
		sinks []string
		want  event.LSN
		ok    bool
	}{
		{"all", []string{"file", "kafka", "nats"}, 200, true},
		{"order does not matter", []string{"nats", "file", "kafka"}, 200, true},
		{"subset", []string{"file", "nats"}, 300, true},
		{"one", []string{"nats"}, 400, true},
		{"a sink that never stored", []string{"file", "redis"}, 0, false},
		{"no sinks", nil, 0, false},
		{"sink of another source", []string{"webhook"}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := s.Lowest("slot", tt.sinks)
			if err != nil || got != tt.want || ok != tt.ok {
				t.Errorf("Lowest(%q) = %s, %v, %v; want %s, %v, nil", tt.sinks, got, ok, err, tt.want, tt.ok)
			}
		})
	}
	if _, ok, err := s.Lowest("no-such-source", []string{"file"}); ok || err != nil {
		t.Errorf("Lowest of unknown source = ok %v, err %v; want false, nil", ok, err)
	}
}

func TestProgressRoundTrip(t *testing.T) {
	s, _ := openTemp(t)
	if _, ok, err := s.Progress("slot", "public.users"); ok || err != nil {
		t.Fatalf("Progress on empty store = ok %v, err %v", ok, err)
	}
	at := time.Date(2026, 11, 23, 4, 56, 29, 368123000, time.UTC)
	want := Progress{LastKey: []byte(`{"id":42,"tenant":"a\"b"}`), Rows: 42, UpdatedAt: at}
	must(t, s.SetProgress("slot", "public.users", want))
	got, ok, err := s.Progress("slot", "public.users")
	if err != nil || !ok {
		t.Fatalf("Progress = ok %v, err %v", ok, err)
	}
	if !bytes.Equal(got.LastKey, want.LastKey) || got.Rows != want.Rows || got.Done || !got.UpdatedAt.Equal(at) {
		t.Fatalf("Progress = %+v; want %+v", got, want)
	}

	// A zero UpdatedAt is filled in.
	before := time.Now()
	must(t, s.SetProgress("slot", "public.users", Progress{LastKey: []byte(`{"id":99}`), Rows: 99, Done: true}))
	got, _, _ = s.Progress("slot", "public.users")
	if !got.Done || got.Rows != 99 || got.UpdatedAt.Before(before.Add(-time.Second)) {
		t.Fatalf("Progress after update = %+v", got)
	}

	// Tables are independent; deleting one leaves the other.
	must(t, s.SetProgress("slot", "public.orders", Progress{Rows: 1}))
	must(t, s.DeleteProgress("slot", "public.users"))
	if _, ok, _ := s.Progress("slot", "public.users"); ok {
		t.Error("progress still there after DeleteProgress")
	}
	if p, ok, _ := s.Progress("slot", "public.orders"); !ok || p.Rows != 1 {
		t.Errorf("other table's progress = %+v, %v", p, ok)
	}
	must(t, s.DeleteProgress("slot", "public.users")) // missing: not an error
	must(t, s.DeleteProgress("nope", "public.users"))
}

func TestReopenKeepsValues(t *testing.T) {
	s, path := openTemp(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	must(t, s.SetPosition("slot", "file", 0xABCDEF))
	must(t, s.SetProgress("slot", "public.t", Progress{LastKey: []byte(`{"id":7}`), Rows: 7}))
	must(t, s.AddMark("slot", Mark{At: t0, LSN: 100}, Retention{Age: time.Hour}))
	must(t, s.AddMark("slot", Mark{At: t0.Add(time.Minute), LSN: 200}, Retention{Age: time.Hour}))
	must(t, s.Close())
	must(t, s.Close()) // idempotent

	if err := s.SetPosition("slot", "file", 1); err == nil {
		t.Error("SetPosition after Close: want error")
	}

	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if lsn, ok, err := s2.Position("slot", "file"); lsn != 0xABCDEF || !ok || err != nil {
		t.Errorf("Position after reopen = %s, %v, %v", lsn, ok, err)
	}
	if p, ok, err := s2.Progress("slot", "public.t"); p.Rows != 7 || string(p.LastKey) != `{"id":7}` || !ok || err != nil {
		t.Errorf("Progress after reopen = %+v, %v, %v", p, ok, err)
	}
	marks, err := s2.Marks("slot")
	if err != nil {
		t.Fatal(err)
	}
	want := []Mark{{t0, 100}, {t0.Add(time.Minute), 200}}
	if fmt.Sprint(marks) != fmt.Sprint(want) {
		t.Errorf("Marks after reopen = %v; want %v", marks, want)
	}
}

func TestOpenLockedFailsFast(t *testing.T) {
	_, path := openTemp(t)
	start := time.Now()
	s2, err := Open(path)
	if err == nil {
		s2.Close()
		t.Fatal("second Open of a held file succeeded; want ErrLocked")
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v; want an error wrapping ErrLocked", err)
	}
	// Generous bound: the point is that it does not hang.
	if d := time.Since(start); d > 10*LockTimeout {
		t.Errorf("second Open took %s", d)
	}
}

func TestOpenMissingFolder(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "missing", "checkpoint.db"))
	if err == nil {
		t.Fatal("Open in a missing folder: want error")
	}
}

func TestConcurrentUse(t *testing.T) {
	s, _ := openTemp(t)
	const workers, rounds = 8, 50
	sinks := make([]string, workers)
	for i := range sinks {
		sinks[i] = fmt.Sprintf("sink%d", i)
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers*2)
	for w := range workers {
		wg.Add(2)
		go func() { // a writer per sink
			defer wg.Done()
			for r := 1; r <= rounds; r++ {
				if err := s.SetPosition("slot", sinks[w], event.LSN(r*1000+w)); err != nil {
					errs <- err
					return
				}
				if err := s.SetProgress("slot", sinks[w], Progress{Rows: int64(r)}); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() { // a reader: Lowest never goes above what every sink stored
			defer wg.Done()
			for range rounds {
				lsn, ok, err := s.Lowest("slot", sinks)
				if err != nil {
					errs <- err
					return
				}
				if ok && lsn > event.LSN(rounds*1000) {
					errs <- fmt.Errorf("Lowest = %s, above any stored position", lsn)
					return
				}
				if err := s.AddMark("slot", Mark{At: time.Now(), LSN: lsn}, Retention{Age: time.Minute}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	lsn, ok, err := s.Lowest("slot", sinks)
	if err != nil || !ok || lsn != event.LSN(rounds*1000) {
		t.Errorf("final Lowest = %s, %v, %v; want %s", lsn, ok, err, event.LSN(rounds*1000))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
