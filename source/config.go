package source

import (
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/snapshot"
)

// Config says where to stream from. The zero value of every field but DSN
// does the sensible thing.
type Config struct {
	// DSN is a libpq connection string or URL. Empty: the PG* environment
	// variables, as libpq reads them.
	DSN string
	// Slot is the logical replication slot (default "pgfeed").
	Slot string
	// Publication is the pgoutput publication (default: named after the
	// slot). pgfeed creates it with Create and changes it only when it
	// created it for this slot; another publication is used as it is.
	Publication string
	// Tables are globs on "schema.table" ("public.*", "app.orders"; "*"
	// matches any characters, "/" and spaces included). Empty: every table
	// of the publication. With Create, the publication is created (or, when
	// pgfeed owns it, changed) to publish every matching table, now and
	// later: FOR ALL TABLES for "*.*", FOR TABLES IN SCHEMA for "schema.*",
	// otherwise a list that a watcher extends as matching tables appear.
	Tables []string
	// Exclude are globs of tables left out even when Tables match them.
	Exclude []string
	// Filters maps "schema.table" to a row filter: the expression of the
	// publication's WHERE for that table (PostgreSQL 15+), applied when the
	// publication is created or set by Create.
	Filters map[string]string
	// Create creates the slot and the publication when they are missing.
	Create bool
	// ExpectSlot says the slot existed before (a pipeline's checkpoint
	// knows it): Create then creates only the publication, and a missing
	// slot is an error wrapping ErrGap, since the changes it held are lost.
	ExpectSlot bool
	// BackfillNewTables backfills the rows that a table already holds when
	// it joins a listed publication (created after the stream started, or
	// matched by the globs since the last run): rows written before it
	// joined are not in the stream.
	BackfillNewTables bool
	// TableWatchInterval is how often a stream whose publication lists its
	// tables looks for new matching tables (default 10s; negative: never).
	TableWatchInterval time.Duration

	// StartLSN asks the server to start at this position instead of the
	// slot's confirmed position (only later positions are honoured).
	StartLSN event.LSN
	// EndLSN stops the stream (Next returns io.EOF) once every transaction
	// committed at or before it was delivered, like pg_recvlogical --endpos,
	// and no backfill is in progress (those are let finish).
	EndLSN event.LSN

	// Transactions delivers begin and commit events around each transaction.
	Transactions bool
	// Schemas delivers a schema event before a table's first change and
	// whenever its columns change.
	Schemas bool

	// ProtocolVersion of pgoutput: 1, or 2 with streaming of large
	// in-progress transactions. Zero picks 2 on PostgreSQL 14 and later.
	ProtocolVersion int
	// Failover creates the slot as a failover slot (PostgreSQL 17+):
	// physical standbys with sync_replication_slots = on keep a copy of it
	// that the stream can continue from once one of them is promoted. Nil:
	// on where the server supports it. True on an older server is an error.
	// An existing slot is left as it is.
	Failover *bool
	// SlotWait is how long Open waits for a slot that another connection
	// holds to be released, before failing (default 3s; negative: not at all).
	SlotWait time.Duration
	// SlotCheckInterval is how often the stream reads its slot's health
	// (Stream.Health), warning when the slot comes at risk of being
	// invalidated (default 30s; negative: only once, in Open).
	SlotCheckInterval time.Duration
	// Heartbeat is how often the stream checks whether its slot advances,
	// writing a heartbeat (a non-transactional logical message that Next
	// never returns) when it does not: its tables idle, nothing in flight,
	// the server's WAL ahead of the confirmed position (default
	// DefaultHeartbeat; negative: never).
	Heartbeat time.Duration
	// StatusInterval is how often the confirmed position is reported to the
	// server (default 1s).
	StatusInterval time.Duration
	// SpoolDir holds large in-progress transactions until they commit
	// (default: the system's temporary folder).
	SpoolDir string
	// InitialSnapshot, when this call creates the slot, first delivers every
	// row of the stream's tables (Tables, else the publication's) as read
	// events, read in the snapshot the new slot exports: rows and changes
	// meet with no gap and no overlap. The snapshot ends with a commit event
	// at the slot's consistent point (with Transactions). Its state is kept
	// in the source database (SnapshotTable) until the consumer acks that
	// point: a snapshot interrupted by anything (the process killed,
	// PostgreSQL crashed, the network cut) is read again, from a new slot,
	// by the next Open with InitialSnapshot and Create.
	InitialSnapshot bool
	// SnapshotWorkers is how many connections read tables in parallel in
	// the initial snapshot (default: one per table, at most 4).
	SnapshotWorkers int
	// BackfillProgress keeps how far each backfill got (and which tables are
	// still to do), so that a restarted stream resumes mid-table. Nil keeps
	// it in memory: a restart then forgets unfinished backfills.
	BackfillProgress snapshot.ProgressStore
	// BackfillChunk is the number of rows per backfill chunk (default 1024).
	BackfillChunk int
	// Logger receives operational messages (default: discarded).
	Logger *slog.Logger

	selection tableSelection // Tables and Exclude, parsed
}

// Slot and publication names go into replication commands; Postgres
// restricts slot names to these characters and we hold publications to the
// same so that no quoting is ever needed.
var namePattern = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// CheckSlotName reports whether a slot name is one Postgres accepts.
func CheckSlotName(name string) error {
	if !namePattern.MatchString(name) {
		return &UserError{Msg: fmt.Sprintf("invalid slot name %q: use lower-case letters, digits and underscores (at most 63)", name)}
	}
	return nil
}

// Validate runs the checks that Open runs before it connects: the slot and
// publication names, the protocol version, the table globs, and the syntax
// of the DSN. pgfeed run --check uses it to refuse what Open would.
func (c *Config) Validate() error {
	if _, err := c.withDefaults(); err != nil {
		return err
	}
	_, err := ConnConfig(c.DSN)
	return err
}

func (c *Config) withDefaults() (Config, error) {
	cfg := *c
	if cfg.Slot == "" {
		cfg.Slot = "pgfeed"
	}
	if cfg.Publication == "" {
		cfg.Publication = cfg.Slot
	}
	if err := CheckSlotName(cfg.Slot); err != nil {
		return cfg, err
	}
	if !namePattern.MatchString(cfg.Publication) {
		return cfg, &UserError{Msg: fmt.Sprintf("invalid publication name %q: use lower-case letters, digits and underscores (at most 63)", cfg.Publication)}
	}
	if cfg.ProtocolVersion != 0 && cfg.ProtocolVersion != 1 && cfg.ProtocolVersion != 2 {
		return cfg, &UserError{Msg: fmt.Sprintf("invalid protocol version %d: pgoutput versions 1 and 2 are supported", cfg.ProtocolVersion)}
	}
	if cfg.SlotWait == 0 {
		cfg.SlotWait = 3 * time.Second
	}
	if cfg.SlotCheckInterval == 0 {
		cfg.SlotCheckInterval = 30 * time.Second
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.TableWatchInterval == 0 {
		cfg.TableWatchInterval = 10 * time.Second
	}
	var err error
	if cfg.selection, err = newTableSelection(cfg.Tables, cfg.Exclude); err != nil {
		return cfg, err
	}
	return cfg, nil
}
