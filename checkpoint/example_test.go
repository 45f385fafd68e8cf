package checkpoint_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/pgfeed/pgfeed/checkpoint"
	"github.com/pgfeed/pgfeed/event"
)

// A pipeline with two sinks and a one-minute retention window: each sink
// stores what it made durable, the lowest position is marked, and what
// may be confirmed to Postgres trails by the window.
func Example() {
	dir, err := os.MkdirTemp("", "pgfeed-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := checkpoint.Open(filepath.Join(dir, "checkpoint.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	sinks := []string{"file", "kafka"}
	keep := checkpoint.Retention{Age: time.Minute}
	start := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for i, now := range []time.Time{start, start.Add(30 * time.Second), start.Add(90 * time.Second)} {
		base := event.LSN(0x16B0000 + i*0x1000)
		if err := store.SetPosition("main", "file", base+0x800); err != nil {
			log.Fatal(err)
		}
		if err := store.SetPosition("main", "kafka", base); err != nil { // the slower sink
			log.Fatal(err)
		}
		lowest, ok, err := store.Lowest("main", sinks)
		if err != nil || !ok {
			log.Fatal(err)
		}
		if err := store.AddMark("main", checkpoint.Mark{At: now, LSN: lowest}, keep); err != nil {
			log.Fatal(err)
		}
		confirm, ok, err := store.ConfirmableAt("main", now, keep, lowest)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("t+%v durable everywhere %s, confirm %s (%v)\n", now.Sub(start), lowest, confirm, ok)
	}
	// Output:
	// t+0s durable everywhere 0/16B0000, confirm 0/0 (false)
	// t+30s durable everywhere 0/16B1000, confirm 0/0 (false)
	// t+1m30s durable everywhere 0/16B2000, confirm 0/16B1000 (true)
}
