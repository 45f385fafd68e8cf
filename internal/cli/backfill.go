package cli

import (
	"cmp"
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
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
library) to backfill tables while it runs; tables are SQL names as psql takes them
(quote mixed case: '"Orders"'): it walks each table by its key in short
chunks and delivers the rows as read events, merged with watermarks so that no
backfilled row overwrites a newer change. The request is a row of pgfeed.backfill_requests (which only this role
may write) announced through the WAL, so a stream that is down picks it up when
it comes back; progress is stored, so a
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
				if pub := cmp.Or(publication, slot); pub != "" {
					var in bool
					err = db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)`,
						pub, t.Rel.Schema, t.Rel.Table).Scan(&in)
					if err != nil {
						return fmt.Errorf("checking publication %s: %w", pub, err)
					}
					if !in {
						return &source.UserError{Msg: fmt.Sprintf("table %s is not in publication %q, so the stream never sees its changes: add it (ALTER PUBLICATION %s ADD TABLE %s) or pass --publication",
							t.Name(), pub, pgx.Identifier{pub}.Sanitize(), t.Ident().Sanitize())}
					}
				}
				if t.NoKey() != nil {
					e.warnf("note: %s has no primary key or unique not-null index: it will be read whole, in one snapshot", t.Name())
				}
				// Quoted, so that the stream reads exactly this table.
				names[i] = t.Ident().Sanitize()
			}
			lsn, err := source.RequestBackfill(ctx, db, slot, names)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "backfill of %s requested at %s\n", strings.Join(names, ", "), lsn)
			return nil
		},
	}
	conn.register(c)
	c.Flags().StringVar(&slot, "slot", "", "only the stream of this slot backfills (default: every stream of the database)")
	c.Flags().StringVar(&publication, "publication", "", "the publication the stream reads, to check the tables are in it (default: the slot's own)")
	return c
}
