package source

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// A publication that lists its tables does not grow by itself: a table
// created later that matches the globs would never be streamed. The
// watcher looks for such tables every Config.TableWatchInterval and adds
// them, and with BackfillNewTables backfills the rows they got before
// they joined (the stream has only what came after).

func (s *Stream) watchTables(ctx context.Context) {
	t := time.NewTicker(s.cfg.TableWatchInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		added, err := s.addNewTables(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("looking for new tables", "err", err)
			}
			continue
		}
		if len(added) > 0 {
			s.log.Info("added new tables to the publication", "publication", s.cfg.Publication, "tables", len(added))
			if s.cfg.BackfillNewTables {
				s.backfills.queueTables(added)
			}
		}
	}
}

// addNewTables adds the selected tables missing from the publication.
func (s *Stream) addNewTables(ctx context.Context) ([]tableName, error) {
	conn, err := Connect(ctx, s.cfg.DSN)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	pub, err := readPublication(ctx, conn, s.cfg.Publication)
	if err != nil || !pub.exists || pub.allTables || !pub.ownedBy(s.cfg.Publication, s.cfg.Slot) {
		return nil, err // not ours to change, or dropped (the stream reports that)
	}
	sel := s.cfg.selection
	if sel.everything() {
		sel.include = allPattern
	}
	tables, err := resolveTables(ctx, conn, sel)
	if err != nil {
		return nil, err
	}
	in, err := publishedTables(ctx, conn, s.cfg.Publication)
	if err != nil {
		return nil, err
	}
	var added []tableName
	for _, t := range tables {
		if in[t] {
			continue
		}
		stmt := "ALTER PUBLICATION " + pgx.Identifier{s.cfg.Publication}.Sanitize() + " ADD TABLE " + t.sql()
		if _, filtered := s.cfg.Filters[t.String()]; filtered {
			f, err := checkFilters(ctx, conn, &Config{Slot: s.cfg.Slot, Filters: map[string]string{t.String(): s.cfg.Filters[t.String()]}}, []tableName{t}, 150000)
			if err != nil {
				return added, err
			}
			stmt += " WHERE (" + f[t] + ")"
		}
		if err := execOne(ctx, conn, stmt); err != nil {
			return added, explainSQL(err, "adding "+t.String()+" to publication "+s.cfg.Publication)
		}
		added = append(added, t)
	}
	return added, nil
}
