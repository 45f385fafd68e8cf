package checkpoint

import (
	"fmt"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/event"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func TestConfirmable(t *testing.T) {
	// Positions made durable once a minute: 1000 at t0, 2000 at t0+1m, ...
	marks := []Mark{{t0, 1000}, {t0.Add(time.Minute), 2000}, {t0.Add(2 * time.Minute), 3000}, {t0.Add(3 * time.Minute), 4000}}
	now := t0.Add(3 * time.Minute)
	tests := []struct {
		name    string
		marks   []Mark
		keep    Retention
		current event.LSN
		want    event.LSN
		ok      bool
	}{
		{"no retention confirms current", marks, Retention{}, 4000, 4000, true},
		{"no retention, nothing durable", nil, Retention{}, 0, 0, false},
		{"age picks the newest mark at or before the cutoff", marks, Retention{Age: 90 * time.Second}, 4000, 2000, true},
		{"age exactly on a mark takes it", marks, Retention{Age: 2 * time.Minute}, 4000, 2000, true},
		{"age reaching before every mark confirms nothing", marks, Retention{Age: time.Hour}, 4000, 0, false},
		{"age on the oldest mark", marks, Retention{Age: 3 * time.Minute}, 4000, 1000, true},
		{"age of zero length window", marks, Retention{Age: time.Nanosecond}, 4000, 3000, true},
		{"age without marks confirms nothing", nil, Retention{Age: time.Minute}, 4000, 0, false},
		{"age never above current", marks, Retention{Age: time.Minute}, 2500, 2500, true},
		{"bytes", nil, Retention{Bytes: 1500}, 4000, 2500, true},
		{"bytes equal to current", nil, Retention{Bytes: 4000}, 4000, 0, false},
		{"bytes above current", nil, Retention{Bytes: 1 << 40}, 4000, 0, false},
		{"bytes across the 4 GB boundary", nil, Retention{Bytes: 16}, 0x1_0000_0008, 0xFFFF_FFF8, true},
		{"both: age is the larger window", marks, Retention{Age: 90 * time.Second, Bytes: 500}, 4000, 2000, true},
		{"both: bytes is the larger window", marks, Retention{Age: 30 * time.Second, Bytes: 2500}, 4000, 1500, true},
		{"both: age confirms nothing", marks, Retention{Age: time.Hour, Bytes: 1}, 4000, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := confirmable(tt.marks, now, tt.keep, tt.current)
			if got != tt.want || ok != tt.ok {
				t.Errorf("confirmable = %s, %v; want %s, %v", got, ok, tt.want, tt.ok)
			}
			// The store gives the same answer from the same marks.
			s, _ := openTemp(t)
			for _, m := range tt.marks {
				must(t, s.AddMark("slot", m, Retention{Age: 24 * time.Hour}))
			}
			got, ok, err := s.ConfirmableAt("slot", now, tt.keep, tt.current)
			if err != nil || got != tt.want || ok != tt.ok {
				t.Errorf("ConfirmableAt = %s, %v, %v; want %s, %v, nil", got, ok, err, tt.want, tt.ok)
			}
		})
	}
}

func TestAddMarkSkipsAndPrunes(t *testing.T) {
	s, _ := openTemp(t)
	keep := Retention{Age: 10 * time.Second}
	add := func(at time.Duration, lsn event.LSN) {
		t.Helper()
		must(t, s.AddMark("slot", Mark{At: t0.Add(at), LSN: lsn}, keep))
	}
	check := func(want ...Mark) {
		t.Helper()
		got, err := s.Marks("slot")
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("marks = %v\nwant    %v", got, want)
		}
	}
	add(0, 100)
	add(500*time.Millisecond, 150) // within MarkInterval: dropped
	add(2*time.Second, 100)        // no progress: dropped
	add(-time.Second, 300)         // clock stepped back: dropped
	check(Mark{t0, 100})

	add(5*time.Second, 200)
	add(10*time.Second, 300)
	check(Mark{t0, 100}, Mark{t0.Add(5 * time.Second), 200}, Mark{t0.Add(10 * time.Second), 300})

	// At t0+16s the cutoff is t0+6s: the mark at t0+5s is the one
	// ConfirmableAt needs; the one at t0 goes.
	add(16*time.Second, 400)
	check(Mark{t0.Add(5 * time.Second), 200}, Mark{t0.Add(10 * time.Second), 300}, Mark{t0.Add(16 * time.Second), 400})
	if lsn, ok, err := s.ConfirmableAt("slot", t0.Add(16*time.Second), keep, 400); lsn != 200 || !ok || err != nil {
		t.Errorf("ConfirmableAt after prune = %s, %v, %v; want 0/C8, true", lsn, ok, err)
	}

	// Without an age window only the newest mark stays.
	must(t, s.AddMark("slot", Mark{At: t0.Add(20 * time.Second), LSN: 500}, Retention{Bytes: 1 << 20}))
	check(Mark{t0.Add(20 * time.Second), 500})

	// Sources are independent.
	if m, err := s.Marks("other"); err != nil || len(m) != 0 {
		t.Errorf("Marks(other) = %v, %v", m, err)
	}
}

func TestRetentionWindowOverTime(t *testing.T) {
	// A source advancing by 100 bytes a second for 10 minutes with a
	// one-minute window: the confirmed position trails by a minute, within
	// MarkInterval, and the log stays about one minute long.
	s, _ := openTemp(t)
	keep := Retention{Age: time.Minute}
	for sec := 0; sec <= 600; sec++ {
		now := t0.Add(time.Duration(sec) * time.Second)
		current := event.LSN(1000 + 100*sec)
		must(t, s.AddMark("slot", Mark{At: now, LSN: current}, keep))
		got, ok, err := s.ConfirmableAt("slot", now, keep, current)
		if err != nil {
			t.Fatal(err)
		}
		if sec < 60 {
			if ok {
				t.Fatalf("at %ds confirmed %s before the window filled", sec, got)
			}
			continue
		}
		if want := event.LSN(1000 + 100*(sec-60)); !ok || got != want {
			t.Fatalf("at %ds ConfirmableAt = %s, %v; want %s", sec, got, ok, want)
		}
	}
	marks, err := s.Marks("slot")
	if err != nil {
		t.Fatal(err)
	}
	if len(marks) != 61 {
		t.Errorf("log holds %d marks; want 61 (one a second over the window)", len(marks))
	}
}

func BenchmarkSetPosition(b *testing.B) {
	s, err := Open(b.TempDir() + "/checkpoint.db")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for i := 0; b.Loop(); i++ {
		if err := s.SetPosition("slot", "file", event.LSN(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}
