package catalog

import (
	"context"
	"fmt"
)

// Key returns the names of a table's key columns, in index column order:
// those of its replica identity index under REPLICA IDENTITY USING INDEX,
// else those of its primary key. Nil means the table has neither, and its
// events key on every column.
//
// This is the event's `key` of DESIGN.md, for changes and reads alike. It
// comes from the catalog because pgoutput flags the replica identity, which
// under REPLICA IDENTITY FULL is every column and under NOTHING none. The
// replica identity index comes first because the old rows of updates and
// deletes carry exactly its columns.
func Key(ctx context.Context, q Querier, relid uint32) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT i.indexrelid, a.attname::text
		FROM pg_catalog.pg_index i
		JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
		CROSS JOIN LATERAL unnest((i.indkey::int2[])[0:i.indnkeyatts - 1]) WITH ORDINALITY AS k(attnum, n)
		JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = $1 AND i.indisvalid
			AND (i.indisprimary OR (i.indisreplident AND c.relreplident = 'i'))
		ORDER BY i.indisreplident AND c.relreplident = 'i' DESC, i.indexrelid, k.n`, relid)
	if err != nil {
		return nil, fmt.Errorf("looking up the key of relation %d: %w", relid, err)
	}
	defer rows.Close()
	var (
		names []string
		first uint32
	)
	for rows.Next() {
		var index uint32
		var name string
		if err := rows.Scan(&index, &name); err != nil {
			return nil, fmt.Errorf("looking up the key of relation %d: %w", relid, err)
		}
		if first == 0 {
			first = index
		}
		if index == first {
			names = append(names, name)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("looking up the key of relation %d: %w", relid, err)
	}
	return names, nil
}
