package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/pgfeed/pgfeed/internal/catalog"
	"github.com/pgfeed/pgfeed/snapshot"
	"github.com/pgfeed/pgfeed/source"
	"github.com/spf13/cobra"
)

func newBackfillCmd(e *env) *cobra.Command {
	var conn connFlags
	var slot, publication string
	c := &cobra.Command{
		Use:   "backfill TABLE...",
		Short: "Ask the running stream of a slot to backfill tables, in chunks merged into its changes",
		Long: `Ask the stream reading a slot (pgfeed stream, pgfeed run, or a program using the
library) to backfill tables while it runs: it walks each table by its key in short
chunks and delivers the rows as read events, merged with watermarks so that no
backfilled row overwrites a newer change. The request travels through the WAL, so a
stream that is down picks it up when it comes back; progress is stored, so a
restarted stream resumes mid-table.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, tables []string) error {
			ctx := cmd.Context()
			db, err := source.Connect(ctx, conn.resolve(e))
			if err != nil {
				return err
			}
			defer db.Close(context.Background())
			types := catalog.NewTypes()
			names := make([]string, len(tables))
			for i, name := range tables {
				t, err := snapshot.Describe(ctx, db, types, name)
				if err != nil {
					return explainSnapshot(err)
				}
				var in bool
				err = db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)`,
					publication, t.Rel.Schema, t.Rel.Table).Scan(&in)
				if err != nil {
					return fmt.Errorf("checking publication %s: %w", publication, err)
				}
				if !in {
					return &source.UserError{Msg: fmt.Sprintf("table %s is not in publication %q, so the stream never sees its changes: add it (ALTER PUBLICATION %s ADD TABLE %s) or pass --publication",
						t.Name(), publication, publication, t.Ident().Sanitize())}
				}
				if t.NoKey() != nil {
					fmt.Fprintf(e.stderr, "pgfeed: note: %s has no primary key or unique not-null index: it will be read whole, in one snapshot\n", t.Name())
				}
				names[i] = t.Name()
			}
			req, _ := json.Marshal(source.BackfillRequest{Slot: slot, Tables: names})
			var lsn string
			err = db.QueryRow(ctx, "SELECT pg_logical_emit_message(true, $1, $2)::text", source.BackfillRequestPrefix, string(req)).Scan(&lsn)
			if err != nil {
				return fmt.Errorf("writing the backfill request: %w", err)
			}
			fmt.Fprintf(e.stdout, "backfill of %v requested at %s\n", names, lsn)
			return nil
		},
	}
	conn.register(c)
	c.Flags().StringVar(&slot, "slot", "", "only the stream of this slot backfills (default: every stream of the database)")
	c.Flags().StringVar(&publication, "publication", "pgfeed", "the publication the stream reads, to check the tables are in it")
	return c
}
