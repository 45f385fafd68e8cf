package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgfeed/pgfeed/event"
)

// PGSchema is the schema of the Postgres checkpoint tables: pgfeed's own,
// which sources never stream, snapshot or publish.
const PGSchema = "pgfeed"

// PGTimeout bounds each call of a PGStore: the Storage methods take no
// context, and a checkpoint write that hangs would hold the pipeline.
const PGTimeout = 15 * time.Second

// pgSetup creates the tables. It runs under a transaction-level advisory
// lock because two pgfeeds starting at once would otherwise race in CREATE
// ... IF NOT EXISTS (which is not atomic against a concurrent creator).
var pgSetup = []string{
	"SELECT pg_advisory_xact_lock(7065676665656401)", // "pgfeed" + 01: the setup lock
	"CREATE SCHEMA IF NOT EXISTS " + PGSchema,
	`CREATE TABLE IF NOT EXISTS ` + PGSchema + `.checkpoint_positions (
		source text NOT NULL, sink text NOT NULL, lsn pg_lsn NOT NULL,
		updated_at timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (source, sink))`,
	`CREATE TABLE IF NOT EXISTS ` + PGSchema + `.checkpoint_progress (
		source text NOT NULL, tbl text NOT NULL, progress jsonb NOT NULL,
		PRIMARY KEY (source, tbl))`,
	`CREATE TABLE IF NOT EXISTS ` + PGSchema + `.checkpoint_marks (
		source text NOT NULL, at_ns bigint NOT NULL, lsn pg_lsn NOT NULL,
		PRIMARY KEY (source, at_ns))`,
	`CREATE TABLE IF NOT EXISTS ` + PGSchema + `.checkpoint_servers (
		source text PRIMARY KEY, server jsonb NOT NULL)`,
}

// PGStore keeps checkpoints in tables of schema pgfeed of a PostgreSQL
// database (usually the source database), so that any pgfeed that can
// reach it resumes where another left off: the standby of an
// active/passive pair. Every write is one statement (AddMark: one
// transaction), durable on commit. Its methods are safe for concurrent
// use.
type PGStore struct {
	pool *pgxpool.Pool
}

// OpenPG connects to dsn and creates the checkpoint tables if missing.
func OpenPG(ctx context.Context, dsn string) (*PGStore, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("checkpoint store: invalid DSN: %w", err)
	}
	// A source DSN may ask for a replication connection; the store needs a
	// normal one.
	delete(cfg.ConnConfig.RuntimeParams, "replication")
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "pgfeed checkpoint"
	}
	cfg.MaxConns = 4
	// synchronous_commit off would let a crash of PostgreSQL forget a
	// position that a sink's consumer already saw acked: force it on.
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("checkpoint store: connecting: %w", err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, stmt := range pgSetup {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("checkpoint store: creating tables in schema %s (the role needs CREATE on the database, or create them for it): %w", PGSchema, err)
	}
	return &PGStore{pool: pool}, nil
}

// Close closes the store's connections.
func (s *PGStore) Close() error {
	s.pool.Close()
	return nil
}

func pgCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), PGTimeout)
}

// SetPosition records that sink has made every change up to lsn durable
// for source, as Store.SetPosition does.
func (s *PGStore) SetPosition(source, sink string, lsn event.LSN) error {
	if err := checkNames("source", source, "sink", sink); err != nil {
		return fmt.Errorf("storing position of sink %q: %w", sink, err)
	}
	ctx, cancel := pgCtx()
	defer cancel()
	_, err := s.pool.Exec(ctx, `INSERT INTO `+PGSchema+`.checkpoint_positions (source, sink, lsn) VALUES ($1, $2, $3::text::pg_lsn)
		ON CONFLICT (source, sink) DO UPDATE SET lsn = excluded.lsn, updated_at = now()`, source, sink, lsn.String())
	if err != nil {
		return fmt.Errorf("storing position of sink %q for source %q: %w", sink, source, err)
	}
	return nil
}

// Position returns the durable position of sink for source; ok is false
// when the sink never stored one.
func (s *PGStore) Position(source, sink string) (event.LSN, bool, error) {
	ctx, cancel := pgCtx()
	defer cancel()
	var text string
	err := s.pool.QueryRow(ctx, `SELECT lsn::text FROM `+PGSchema+`.checkpoint_positions WHERE source = $1 AND sink = $2`, source, sink).Scan(&text)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("reading position of sink %q for source %q: %w", sink, source, err)
	}
	lsn, err := event.ParseLSN(text)
	if err != nil {
		return 0, false, fmt.Errorf("reading position of sink %q for source %q: %w", sink, source, err)
	}
	return lsn, true, nil
}

// SetProgress stores the progress of table for source.
func (s *PGStore) SetProgress(source, table string, p Progress) error {
	if err := checkNames("source", source, "table", table); err != nil {
		return fmt.Errorf("storing progress of table %q: %w", table, err)
	}
	if p.UpdatedAt.IsZero() {
		p.UpdatedAt = time.Now().UTC()
	}
	v, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encoding progress of table %q: %w", table, err)
	}
	ctx, cancel := pgCtx()
	defer cancel()
	_, err = s.pool.Exec(ctx, `INSERT INTO `+PGSchema+`.checkpoint_progress (source, tbl, progress) VALUES ($1, $2, $3)
		ON CONFLICT (source, tbl) DO UPDATE SET progress = excluded.progress`, source, table, string(v))
	if err != nil {
		return fmt.Errorf("storing progress of table %q for source %q: %w", table, source, err)
	}
	return nil
}

// Progress returns the stored progress of table for source.
func (s *PGStore) Progress(source, table string) (p Progress, ok bool, err error) {
	ctx, cancel := pgCtx()
	defer cancel()
	var v []byte
	err = s.pool.QueryRow(ctx, `SELECT progress::text FROM `+PGSchema+`.checkpoint_progress WHERE source = $1 AND tbl = $2`, source, table).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return Progress{}, false, nil
	}
	if err == nil {
		err = json.Unmarshal(v, &p)
	}
	if err != nil {
		return Progress{}, false, fmt.Errorf("reading progress of table %q for source %q: %w", table, source, err)
	}
	return p, true, nil
}

// SetServer records the server of source.
func (s *PGStore) SetServer(source string, srv Server) error {
	if err := checkNames("source", source); err != nil {
		return fmt.Errorf("storing the server of source %q: %w", source, err)
	}
	v, err := json.Marshal(srv)
	if err != nil {
		return fmt.Errorf("encoding the server of source %q: %w", source, err)
	}
	ctx, cancel := pgCtx()
	defer cancel()
	_, err = s.pool.Exec(ctx, `INSERT INTO `+PGSchema+`.checkpoint_servers (source, server) VALUES ($1, $2)
		ON CONFLICT (source) DO UPDATE SET server = excluded.server`, source, string(v))
	if err != nil {
		return fmt.Errorf("storing the server of source %q: %w", source, err)
	}
	return nil
}

// Server returns the recorded server of source.
func (s *PGStore) Server(source string) (srv Server, ok bool, err error) {
	ctx, cancel := pgCtx()
	defer cancel()
	var v []byte
	err = s.pool.QueryRow(ctx, `SELECT server::text FROM `+PGSchema+`.checkpoint_servers WHERE source = $1`, source).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return Server{}, false, nil
	}
	if err == nil {
		err = json.Unmarshal(v, &srv)
	}
	if err != nil {
		return Server{}, false, fmt.Errorf("reading the server of source %q: %w", source, err)
	}
	return srv, true, nil
}

// AddMark records m for source and prunes the marks no longer needed, with
// the rules of Store.AddMark.
func (s *PGStore) AddMark(source string, m Mark, keep Retention) error {
	if err := checkNames("source", source); err != nil {
		return fmt.Errorf("storing retention mark: %w", err)
	}
	ctx, cancel := pgCtx()
	defer cancel()
	at := m.At.UnixNano()
	// Without an age window only the newest mark is kept.
	cutoff := int64(math.MaxInt64)
	if keep.Age > 0 {
		cutoff = m.At.Add(-keep.Age).UnixNano()
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO `+PGSchema+`.checkpoint_marks (source, at_ns, lsn)
			SELECT $1, $2, $3::text::pg_lsn
			WHERE NOT EXISTS (SELECT 1 FROM (SELECT at_ns, lsn FROM `+PGSchema+`.checkpoint_marks WHERE source = $1 ORDER BY at_ns DESC LIMIT 1) last
				WHERE $3::text::pg_lsn <= last.lsn OR $2 - last.at_ns < $4)
			ON CONFLICT DO NOTHING`, source, at, m.LSN.String(), int64(MarkInterval))
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM `+PGSchema+`.checkpoint_marks WHERE source = $1 AND at_ns <
			(SELECT at_ns FROM `+PGSchema+`.checkpoint_marks WHERE source = $1 AND at_ns <= $2 ORDER BY at_ns DESC LIMIT 1)`, source, cutoff)
		return err
	})
	if err != nil {
		return fmt.Errorf("storing retention mark %s for source %q: %w", m.LSN, source, err)
	}
	return nil
}

// Marks returns the stored marks of source, oldest first.
func (s *PGStore) Marks(source string) ([]Mark, error) {
	ctx, cancel := pgCtx()
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT at_ns, lsn::text FROM `+PGSchema+`.checkpoint_marks WHERE source = $1 ORDER BY at_ns`, source)
	if err != nil {
		return nil, fmt.Errorf("reading retention marks of source %q: %w", source, err)
	}
	marks, err := pgx.CollectRows(rows, scanMark)
	if err != nil {
		return nil, fmt.Errorf("reading retention marks of source %q: %w", source, err)
	}
	return marks, nil
}

func scanMark(row pgx.CollectableRow) (Mark, error) {
	var at int64
	var text string
	if err := row.Scan(&at, &text); err != nil {
		return Mark{}, err
	}
	lsn, err := event.ParseLSN(text)
	return Mark{At: time.Unix(0, at).UTC(), LSN: lsn}, err
}

// ConfirmableAt is Store.ConfirmableAt on the marks in PostgreSQL.
func (s *PGStore) ConfirmableAt(source string, now time.Time, keep Retention, current event.LSN) (event.LSN, bool, error) {
	var marks []Mark
	if keep.Age > 0 {
		ctx, cancel := pgCtx()
		defer cancel()
		rows, err := s.pool.Query(ctx, `SELECT at_ns, lsn::text FROM `+PGSchema+`.checkpoint_marks
			WHERE source = $1 AND at_ns <= $2 ORDER BY at_ns DESC LIMIT 1`, source, now.Add(-keep.Age).UnixNano())
		if err == nil {
			marks, err = pgx.CollectRows(rows, scanMark)
		}
		if err != nil {
			return 0, false, fmt.Errorf("reading retention marks of source %q: %w", source, err)
		}
	}
	lsn, ok := confirmable(marks, now, keep, current)
	return lsn, ok, nil
}

// ForgetSource removes everything stored for source, in one transaction.
func (s *PGStore) ForgetSource(source string) error {
	ctx, cancel := pgCtx()
	defer cancel()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, t := range []string{"checkpoint_positions", "checkpoint_progress", "checkpoint_marks", "checkpoint_servers"} {
			if _, err := tx.Exec(ctx, "DELETE FROM "+PGSchema+"."+t+" WHERE source = $1", source); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("forgetting source %q: %w", source, err)
	}
	return nil
}
