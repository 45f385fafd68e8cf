package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Backfill requests travel through the WAL, so that the stream of a slot
// sees them wherever it runs, now or after a restart. Any role may write a
// logical message, though, so a message only points at a request row in
// pgfeed's own table (RequestTable), which only the stream's role (or a
// superuser) owns and may write: a role that cannot write there cannot make
// the stream read a table, and the tables come from the row, never from the
// message.

// RequestTable holds backfill requests; RequestBackfill (`pgfeed
// backfill`) creates it.
const RequestTable = OwnSchema + ".backfill_requests"

// BackfillRequest is the content of a backfill request message: the id of
// its row in RequestTable.
type BackfillRequest struct {
	ID int64 `json:"id"`
	// Slot limits the request to the streams of one slot; empty: every slot.
	Slot string `json:"slot,omitempty"`
}

// RequestBackfill asks the streams of slot (empty: of every slot of the
// database) to backfill tables, given as SQL names (quoted where needed:
// `"Orders"`). It writes the request row and its message in one
// transaction and returns the message's position.
func RequestBackfill(ctx context.Context, conn *pgx.Conn, slot string, tables []string) (string, error) {
	if err := ensureOwnTables(ctx, conn); err != nil {
		return "", err
	}
	var lsn string
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		var slotArg *string
		if slot != "" {
			slotArg = &slot
		}
		var id int64
		if err := tx.QueryRow(ctx, "INSERT INTO "+RequestTable+" (slot, tables) VALUES ($1, $2) RETURNING id", slotArg, tables).Scan(&id); err != nil {
			return err
		}
		msg, _ := json.Marshal(BackfillRequest{ID: id, Slot: slot})
		return tx.QueryRow(ctx, "SELECT pg_logical_emit_message(true, $1, $2)::text", BackfillRequestPrefix, string(msg)).Scan(&lsn)
	})
	if err != nil {
		return "", explainSQL(err, "writing the backfill request")
	}
	return lsn, nil
}

// errUntrusted is why a request is refused when the request table could
// have been written by a role other than the stream's.
var errUntrusted = errors.New("the request table is not owned by the stream's role (or a superuser), or other roles may write it")

// loadRequest reads and checks the request a message points at, and
// returns its tables as "schema"."table" identifiers of existing tables
// that the requesting role may read.
func loadRequest(ctx context.Context, conn *pgx.Conn, id int64) ([]string, error) {
	var trusted bool
	err := conn.QueryRow(ctx, `SELECT (c.relowner = r.oid OR o.rolsuper)
			AND NOT EXISTS (SELECT 1 FROM aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
				WHERE a.grantee <> c.relowner AND a.privilege_type IN ('INSERT', 'UPDATE'))
		FROM pg_class c JOIN pg_roles o ON o.oid = c.relowner, pg_roles r
		WHERE c.oid = to_regclass($1) AND r.rolname = current_user`, RequestTable).Scan(&trusted)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("no request table %s", RequestTable)
	}
	if err != nil {
		return nil, fmt.Errorf("checking %s: %w", RequestTable, err)
	}
	if !trusted {
		return nil, errUntrusted
	}
	var names []string
	var by string
	err = conn.QueryRow(ctx, "SELECT tables, requested_by::text FROM "+RequestTable+" WHERE id = $1", id).Scan(&names, &by)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("request %d is not in %s", id, RequestTable)
	}
	if err != nil {
		return nil, fmt.Errorf("reading request %d: %w", id, err)
	}
	out := make([]string, 0, len(names))
	for _, name := range names {
		t, err := lookupTableName(ctx, conn, name)
		if err != nil {
			return nil, err
		}
		var allowed bool
		if err := conn.QueryRow(ctx, "SELECT has_table_privilege($1, to_regclass($2), 'SELECT')", by, t.sql()).Scan(&allowed); err != nil {
			return nil, fmt.Errorf("checking the privileges of %s: %w", by, err)
		}
		if !allowed {
			return nil, fmt.Errorf("role %s, who requested it, may not read %s", by, t)
		}
		out = append(out, t.sql())
	}
	return out, nil
}

// lookupTableName resolves an SQL table name (quoted where needed) the way
// PostgreSQL does, without building SQL from it.
func lookupTableName(ctx context.Context, conn *pgx.Conn, name string) (tableName, error) {
	var t tableName
	err := conn.QueryRow(ctx, `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p')`, name).Scan(&t.schema, &t.table)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, fmt.Errorf("no table %s in the database (names are SQL identifiers: quote mixed case, \"Orders\")", name)
	}
	if err != nil {
		return t, fmt.Errorf("looking up table %s: %w", name, err)
	}
	return t, nil
}
