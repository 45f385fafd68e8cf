package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/internal/pgcluster"
	"github.com/pgfeed/pgfeed/source"
	"github.com/spf13/cobra"
)

func newDemoCmd(e *env) *cobra.Command {
	var rate float64
	c := &cobra.Command{
		Use:   "demo",
		Short: "Start a throwaway PostgreSQL with a demo table and live writes, and stream its changes",
		Long: `Start a throwaway PostgreSQL in a temporary folder, create a demo table,
write a few changes per second, and print them as JSON lines until Ctrl-C.
Everything is removed on exit.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), e, rate)
		},
	}
	c.Flags().Float64Var(&rate, "rate", 3, "changes per second")
	return c
}

func runDemo(ctx context.Context, e *env, rate float64) error {
	if rate <= 0 {
		return fmt.Errorf("invalid --rate %v: want a positive number of changes per second", rate)
	}
	fmt.Fprintln(e.stderr, "pgfeed demo: starting a throwaway PostgreSQL...")
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		return fmt.Errorf("starting PostgreSQL for the demo: %w", err)
	}
	defer cluster.Remove()
	dsn := cluster.DSN("")
	db, err := source.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer db.Close(context.Background())
	_, err = db.Exec(ctx, `CREATE TABLE inventory(
		id serial PRIMARY KEY, item text NOT NULL, qty integer NOT NULL,
		price numeric(10,2), tags text[], attrs jsonb, updated_at timestamptz DEFAULT now())`)
	if err != nil {
		return fmt.Errorf("creating the demo table: %w", err)
	}
	fmt.Fprintf(e.stderr, "pgfeed demo: PostgreSQL at %s, table public.inventory; writing %.3g changes/s. Try: psql %q. Ctrl-C stops.\n", dsn, rate, cluster.URL(""))
	// The changes scroll the line above off a terminal within seconds: say
	// again how to connect after every screenful.
	hint := fmt.Sprintf("pgfeed demo: try psql %q and change public.inventory yourself; Ctrl-C stops.\n", cluster.URL(""))
	stdout := &hintingWriter{w: e.stdout, hint: func() { fmt.Fprint(e.stderr, hint) }, every: demoHintLines}

	s, err := source.Open(ctx, source.Config{DSN: dsn, Slot: "demo", Create: true, Transactions: true})
	if err != nil {
		return err
	}
	writeErr := make(chan error, 1)
	go func() { writeErr <- demoWriter(ctx, db, rate) }()

	out := &ackingWriter{out: stdout, s: s, period: time.Second, last: time.Now()}
	err = pump(ctx, s, out, encode.JSON{}, false)
	if ferr := out.flushAndAck(); err == nil {
		err = ferr
	}
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if werr := <-writeErr; err == nil && werr != nil && ctx.Err() == nil {
		err = werr
	}
	fmt.Fprintln(e.stderr, "pgfeed demo: stopped; the throwaway PostgreSQL is removed.")
	return err
}

// demoHintLines is how many lines of changes the demo prints between two
// reminders of the psql command: about a terminal's height.
const demoHintLines = 30

// hintingWriter calls hint after each write that completes another every
// lines, so that the hint stays on a terminal the lines scroll.
type hintingWriter struct {
	w     io.Writer
	hint  func()
	every int
	lines int
}

func (h *hintingWriter) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.lines += bytes.Count(p[:n], []byte{'\n'})
	if h.lines >= h.every {
		h.lines = 0
		h.hint()
	}
	return n, err
}

// demoWriter inserts, updates and deletes inventory rows at the given rate.
func demoWriter(ctx context.Context, db *pgx.Conn, rate float64) error {
	items := []string{"apple", "pear", "plum", "fig", "kiwi", "lime"}
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		var err error
		switch n := rand.IntN(10); {
		case n < 5:
			item := items[rand.IntN(len(items))]
			_, err = db.Exec(ctx, `INSERT INTO inventory(item, qty, price, tags, attrs) VALUES ($1, $2, $3, $4, $5)`,
				item, rand.IntN(100), fmt.Sprintf("%d.%02d", rand.IntN(20), rand.IntN(100)), []string{"fresh", item[:1]},
				map[string]any{"origin": "demo", "batch": rand.IntN(5)})
		case n < 9:
			_, err = db.Exec(ctx, `UPDATE inventory SET qty = qty + 1, updated_at = now()
				WHERE id = (SELECT id FROM inventory ORDER BY random() LIMIT 1)`)
		default:
			_, err = db.Exec(ctx, `DELETE FROM inventory WHERE id = (SELECT min(id) FROM inventory)`)
		}
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("demo writer: %w", err)
		}
	}
}
