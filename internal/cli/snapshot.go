package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/pgfeed/pgfeed/snapshot"
	"github.com/pgfeed/pgfeed/source"
	"github.com/spf13/cobra"
)

func newSnapshotCmd(e *env) *cobra.Command {
	var conn connFlags
	var workers int
	var quiet bool
	c := &cobra.Command{
		Use:   "snapshot TABLE...",
		Short: "Print the rows of tables as op \"read\" events, from one consistent snapshot, without a slot",
		Long: `Print every row of the tables as JSON lines of op "read" events. All tables are
read in one snapshot (over parallel connections with COPY). On a terminal, a progress
line (rows, rows/s, ETA from pg_class.reltuples) is shown on stderr; piped, it is quiet.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, tables []string) error {
			dsn := conn.resolve(e)
			// Check the server the same way stream does, for the same one-line errors.
			db, err := source.Connect(cmd.Context(), dsn)
			if err != nil {
				return err
			}
			db.Close(context.Background())
			opts := snapshot.ExportOptions{Workers: workers}
			if f, ok := e.stderr.(*os.File); ok && !quiet && snapshot.IsTerminal(f) {
				opts.Progress = f
			}
			w := bufio.NewWriterSize(e.stdout, 1<<20)
			st, err := snapshot.Export(cmd.Context(), dsn, tables, w, opts)
			if ferr := w.Flush(); err == nil && ferr != nil {
				err = fmt.Errorf("writing output: %w", ferr)
			}
			if err != nil {
				return explainSnapshot(err)
			}
			if opts.Progress != nil {
				fmt.Fprintf(e.stderr, "\n%d rows of %d tables in %v\n", st.Rows, st.Tables, st.Elapsed.Round(1e6))
			}
			return nil
		},
	}
	conn.register(c)
	c.Flags().IntVar(&workers, "workers", 0, "connections reading tables in parallel (default: one per table, at most 4)")
	c.Flags().BoolVar(&quiet, "quiet", false, "no progress line, even on a terminal")
	return c
}

// explainSnapshot keeps the snapshot package's own clear messages for the
// errors a user causes.
func explainSnapshot(err error) error {
	var nf *snapshot.NotFoundError
	var perm *snapshot.PermissionError
	switch {
	case errors.As(err, &nf):
		return &source.UserError{Msg: nf.Error(), Err: err}
	case errors.As(err, &perm):
		return &source.UserError{Msg: perm.Error(), Err: err}
	}
	return err
}
