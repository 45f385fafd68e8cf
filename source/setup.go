package source

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgfeed/pgfeed/event"
)

// sessionParams make every session print values the way the event mapping
// expects them (ISO dates, UTC, exact floats, hex bytea), whatever the
// server's or the role's defaults are. The replication connection needs
// them too: pgoutput formats values with the walsender's settings.
var sessionParams = map[string]string{
	"DateStyle":          "ISO, YMD",
	"TimeZone":           "UTC",
	"IntervalStyle":      "postgres",
	"extra_float_digits": "3",
	"bytea_output":       "hex",
}

// ConnConfig parses a DSN (empty: the PG* environment) into a pgx config
// with pgfeed's session settings.
func ConnConfig(dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, &UserError{Msg: "invalid DSN: " + dsnProblem(err), Err: err}
	}
	applySession(&cfg.Config)
	return cfg, nil
}

// dsnProblem says what is wrong with a DSN that does not parse. pgx's
// message repeats the DSN (a password masked, but the rest of it, which may
// come from the environment) and wraps a cause that is nil for some
// mistakes (a port that is not a number), which printed "invalid DSN: <nil>".
func dsnProblem(err error) string {
	msg := err.Error()
	if _, rest, ok := strings.Cut(msg, "`: "); ok && strings.HasPrefix(msg, "cannot parse `") {
		msg = rest
	}
	switch {
	case strings.HasPrefix(msg, "invalid port"):
		return msg + ": the port must be a number from 1 to 65535 (port=5432, or host:5432 in a URL)"
	case strings.Contains(msg, "keyword/value"):
		return msg + ": write key=value pairs (host=db port=5432 dbname=app) or a URL (postgres://user@db:5432/app)"
	case strings.Contains(msg, "as URL"):
		return msg + ": write a URL as postgres://user:password@host:port/dbname, or key=value pairs"
	}
	return msg + ": see the libpq connection string syntax (keyword=value pairs or a postgres:// URL)"
}

func applySession(cfg *pgconn.Config) {
	for k, v := range sessionParams {
		cfg.RuntimeParams[k] = v
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "pgfeed"
	}
}

// Connect opens a normal (non-replication) connection with pgfeed's
// session settings, explaining failures a user can fix.
func Connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := ConnConfig(dsn)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, explainConnect(err, "connecting to PostgreSQL")
	}
	return conn, nil
}

func connectReplication(ctx context.Context, dsn string) (*pgconn.PgConn, error) {
	cfg, err := ConnConfig(dsn)
	if err != nil {
		return nil, err
	}
	pc := cfg.Config.Copy()
	pc.RuntimeParams["replication"] = "database"
	conn, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, explainConnect(err, "opening the replication connection")
	}
	return conn, nil
}

// checkServer verifies what logical decoding needs before anything else, so
// that a misconfigured server gets one clear line instead of a protocol error.
func checkServer(ctx context.Context, conn *pgx.Conn) (version int, err error) {
	var level, num string
	var canReplicate bool
	err = conn.QueryRow(ctx, `SELECT current_setting('wal_level'), current_setting('server_version_num'),
		(SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user)`).Scan(&level, &num, &canReplicate)
	if err != nil {
		return 0, explainSQL(err, "checking the server")
	}
	if level != "logical" {
		return 0, &UserError{Msg: fmt.Sprintf("wal_level is %q, but logical decoding needs \"logical\": set wal_level = logical in postgresql.conf (or ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL", level)}
	}
	if !canReplicate {
		return 0, &UserError{Msg: "the user in the DSN lacks the REPLICATION attribute: run ALTER ROLE <user> REPLICATION as a superuser, or connect as a role that has it"}
	}
	version, _ = strconv.Atoi(num)
	if version < 100000 {
		return 0, &UserError{Msg: fmt.Sprintf("PostgreSQL %s is too old: pgfeed needs 10 or later for pgoutput", num)}
	}
	return version, nil
}

// slotInfo is what the stream needs to know of an existing slot.
type slotInfo struct {
	exists    bool
	plugin    string
	database  string
	active    bool
	activePID int
	confirmed event.LSN
}

func readSlot(ctx context.Context, conn *pgx.Conn, name string) (slotInfo, error) {
	var s slotInfo
	var plugin, database *string
	var pid *int
	var confirmed *string
	err := conn.QueryRow(ctx, `SELECT plugin, database, active, active_pid, confirmed_flush_lsn::text
		FROM pg_replication_slots WHERE slot_name = $1`, name).Scan(&plugin, &database, &s.active, &pid, &confirmed)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, nil
	}
	if err != nil {
		return s, explainSQL(err, "reading replication slot "+name)
	}
	s.exists = true
	if plugin != nil {
		s.plugin = *plugin
	}
	if database != nil {
		s.database = *database
	}
	if pid != nil {
		s.activePID = *pid
	}
	if confirmed != nil {
		s.confirmed, _ = event.ParseLSN(*confirmed)
	}
	return s, nil
}

// checkSlot verifies that an existing slot can be streamed from here.
func checkSlot(s slotInfo, name, database string) error {
	switch {
	case s.plugin != "pgoutput":
		return &UserError{Msg: fmt.Sprintf("replication slot %q uses plugin %q, not pgoutput: drop it (pgfeed slot drop %s) or choose another --slot", name, s.plugin, name)}
	case s.database != database:
		return &UserError{Msg: fmt.Sprintf("replication slot %q belongs to database %q, not %q: connect to that database or choose another --slot", name, s.database, database)}
	case s.active:
		return &UserError{Msg: fmt.Sprintf("replication slot %q is active for PID %d: another consumer is streaming from it; stop it or use another --slot", name, s.activePID)}
	}
	return nil
}

// FailoverVersion is the first server_version_num with failover slots.
const FailoverVersion = 170000

// failoverSlot says whether a slot created on a server of version should
// be a failover slot: want (nil: where supported), or an error when it is
// asked of a server that has none.
func failoverSlot(want *bool, version int) (bool, error) {
	if want == nil {
		return version >= FailoverVersion, nil
	}
	if *want && version < FailoverVersion {
		return false, &UserError{Msg: fmt.Sprintf("failover slots need PostgreSQL 17 or later (server is %d): set failover = false, or upgrade the server", version)}
	}
	return *want, nil
}

// createSlot creates the logical slot on the replication connection. With
// export, the snapshot it exports stays valid until the next command on
// that connection. A failover slot (PostgreSQL 17+) is synced to the
// standbys that have sync_replication_slots = on.
func createSlot(ctx context.Context, repl *pgconn.PgConn, name string, export, failover bool) (pglogrepl.CreateReplicationSlotResult, error) {
	action := "NOEXPORT_SNAPSHOT"
	if export {
		action = "EXPORT_SNAPSHOT"
	}
	if failover {
		// Only the parenthesized syntax (PostgreSQL 15+) has the option.
		action = "(SNAPSHOT 'nothing', FAILOVER true)"
		if export {
			action = "(SNAPSHOT 'export', FAILOVER true)"
		}
	}
	res, err := pglogrepl.CreateReplicationSlot(ctx, repl, name, "pgoutput", pglogrepl.CreateReplicationSlotOptions{SnapshotAction: action})
	if err != nil {
		return res, explainSQL(err, "creating replication slot "+name)
	}
	return res, nil
}
