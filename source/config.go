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
	// Publication is the pgoutput publication (default "pgfeed").
	Publication string
	// Tables are globs on "schema.table" ("public.*", "app.orders"). Empty:
	// every table of the publication. With Create, the publication is created
	// (or altered) to hold exactly the matching tables.
	Tables []string
	// Exclude are globs of tables left out even when Tables match them.
	Exclude []string
	// Filters maps "schema.table" to a row filter: the expression of the
	// publication's WHERE for that table (PostgreSQL 15+), applied when the
	// publication is created or set by Create.
	Filters map[string]string
	// Create creates the slot and the publication when they are missing.
	Create bool

	// StartLSN asks the server to start at this position instead of the
	// slot's confirmed position (only later positions are honoured).
	StartLSN event.LSN
	// EndLSN stops the stream (Next returns io.EOF) once every transaction
	// committed at or before it was delivered, like pg_recvlogical --endpos.
	EndLSN event.LSN

	// Transactions delivers begin and commit events around each transaction.
	Transactions bool
	// Schemas delivers a schema event before a table's first change and
	// whenever its columns change.
	Schemas bool

	// ProtocolVersion of pgoutput: 1, or 2 with streaming of large
	// in-progress transactions. Zero picks 2 on PostgreSQL 14 and later.
	ProtocolVersion int
	// SlotWait is how long Open waits for a slot that another connection
	// holds to be released, before failing (default 3s; negative: not at all).
	SlotWait time.Duration
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
	// at the slot's consistent point (with Transactions). If the process
	// dies mid-snapshot, the slot exists and no snapshot comes again: drop
	// the slot to start over (pgfeed run does this by itself).
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
		cfg.Publication = "pgfeed"
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
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	for _, g := range append(append([]string(nil), cfg.Tables...), cfg.Exclude...) {
		if err := validGlob(g); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}
