package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgfeed/pgfeed/source"
	"github.com/spf13/cobra"
)

func newSlotCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "slot", Short: "List, create and drop logical replication slots"}
	c.AddCommand(newSlotListCmd(e), newSlotCreateCmd(e), newSlotDropCmd(e))
	return c
}

// SlotInfo is one row of `pgfeed slot list`: the slot and its health
// (wal_status, safe_wal_size, retained WAL, invalidation, decoding
// counters), each column where the server's version has it.
type SlotInfo struct {
	Name         string `json:"name"`
	Plugin       string `json:"plugin"`
	Type         string `json:"type"`
	Database     string `json:"database"`
	Active       bool   `json:"active"`
	ActivePID    *int   `json:"active_pid"`
	ConfirmedLSN string `json:"confirmed_flush_lsn"`
	RestartLSN   string `json:"restart_lsn"`
	LagBytes     int64  `json:"lag_bytes"`
	source.Health
	// Warning says why the slot is at risk of being invalidated, or that
	// it was; empty while it is healthy.
	Warning string `json:"warning,omitempty"`
}

func newSlotListCmd(e *env) *cobra.Command {
	var conn connFlags
	var asJSON bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List slots with their plugin, activity, confirmed position and retained WAL",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := source.Connect(cmd.Context(), conn.resolve(e))
			if err != nil {
				return err
			}
			defer db.Close(context.Background())
			slots, err := listSlots(cmd.Context(), db)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(e.stdout)
				for _, s := range slots {
					if err := enc.Encode(s); err != nil {
						return err
					}
				}
				return nil
			}
			return printSlots(e, slots)
		},
	}
	conn.register(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per slot")
	return c
}

func listSlots(ctx context.Context, db *pgx.Conn) ([]SlotInfo, error) {
	rows, err := db.Query(ctx, `SELECT slot_name, coalesce(plugin, ''), slot_type, coalesce(database, ''), active, active_pid,
		coalesce(confirmed_flush_lsn::text, ''), coalesce(restart_lsn::text, ''),
		coalesce(pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, confirmed_flush_lsn), 0)::bigint
		FROM pg_replication_slots ORDER BY slot_name`)
	if err != nil {
		return nil, fmt.Errorf("listing slots: %w", err)
	}
	slots, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (SlotInfo, error) {
		var s SlotInfo
		err := r.Scan(&s.Name, &s.Plugin, &s.Type, &s.Database, &s.Active, &s.ActivePID, &s.ConfirmedLSN, &s.RestartLSN, &s.LagBytes)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing slots: %w", err)
	}
	health, err := source.SlotHealths(ctx, db)
	if err != nil {
		return nil, err
	}
	byName := map[string]source.Health{}
	for _, h := range health {
		byName[h.Slot] = h
	}
	for i := range slots {
		s := &slots[i]
		s.Health = byName[s.Name] // a slot dropped in between has none
		s.Warning = s.Health.Warning()
		if err := s.Health.Err(); err != nil {
			s.Warning = oneLine(err)
		}
	}
	return slots, nil
}

// printSlots writes the table of slot list, then one warning line on
// stderr for each slot at risk or invalidated.
func printSlots(e *env, slots []SlotInfo) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tPLUGIN\tDATABASE\tACTIVE\tCONFIRMED_FLUSH_LSN\tRETAINED_WAL_BYTES\tLAG_BYTES\tWAL_STATUS\tSAFE_WAL_SIZE\tINACTIVE_SINCE\tINVALIDATION_REASON\tSPILL_BYTES\tSTREAM_BYTES\tFAILOVER\tSYNCED")
	for _, s := range slots {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Plugin, s.Database, s.Active, s.ConfirmedLSN,
			s.RetainedBytes, s.LagBytes, dash(s.WALStatus), safeSize(s.Health), inactiveSince(s.InactiveSince),
			dash(s.InvalidationReason), counter(s.Stats, func(st *source.SlotStats) int64 { return st.SpillBytes }),
			counter(s.Stats, func(st *source.SlotStats) int64 { return st.StreamBytes }), flag(s.Failover), flag(s.Synced))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range slots {
		if s.Warning != "" {
			e.warnf("warning: %s", s.Warning)
		}
	}
	return nil
}

// dash stands for a value the server does not report.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// flag prints a column of PostgreSQL 17+ ("-" before).
func flag(b *bool) string {
	if b == nil {
		return "-"
	}
	return strconv.FormatBool(*b)
}

func safeSize(h source.Health) string {
	switch {
	case h.SafeWALSize != nil:
		return strconv.FormatInt(*h.SafeWALSize, 10)
	case h.MaxSlotWALKeepSize < 0 && h.WALStatus != "lost":
		return "unlimited"
	}
	return "-"
}

func inactiveSince(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func counter(st *source.SlotStats, f func(*source.SlotStats) int64) string {
	if st == nil {
		return "-"
	}
	return strconv.FormatInt(f(st), 10)
}

func newSlotCreateCmd(e *env) *cobra.Command {
	var failover bool
	var c *cobra.Command
	c = slotNameCmd(e, "create NAME", "Create a logical replication slot with the pgoutput plugin",
		func(ctx context.Context, db *pgx.Conn, name string) error {
			var version int
			if err := db.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
				return source.ExplainSQL(err, "reading the server version")
			}
			var want *bool
			if c.Flags().Changed("failover") {
				want = &failover
			}
			fo := version >= source.FailoverVersion
			if want != nil {
				if *want && !fo {
					return &source.UserError{Msg: fmt.Sprintf("failover slots need PostgreSQL 17 or later (server is %d): drop --failover", version)}
				}
				fo = *want
			}
			query := "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')"
			args := []any{name}
			if version >= source.FailoverVersion {
				query = "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput', false, false, $2)"
				args = append(args, fo)
			}
			var lsn string
			if err := db.QueryRow(ctx, query, args...).Scan(&lsn); err != nil {
				return slotError(err, "creating slot "+name)
			}
			kind := ""
			if fo {
				kind = " (failover)"
			}
			fmt.Fprintf(e.stdout, "created slot %s at %s%s\n", name, lsn, kind)
			return nil
		})
	c.Flags().BoolVar(&failover, "failover", true, "create a failover slot, synced to standbys with sync_replication_slots (PostgreSQL 17+; default on there)")
	return c
}

func newSlotDropCmd(e *env) *cobra.Command {
	return slotNameCmd(e, "drop NAME", "Drop a replication slot, letting PostgreSQL recycle the WAL it retained",
		func(ctx context.Context, db *pgx.Conn, name string) error {
			if _, err := db.Exec(ctx, "SELECT pg_drop_replication_slot($1)", name); err != nil {
				return slotError(err, "dropping slot "+name)
			}
			if err := source.ForgetSnapshot(ctx, db, name); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "dropped slot %s\n", name)
			return nil
		})
}

// slotNameCmd is a command on one named slot: it checks the name and
// connects before calling run.
func slotNameCmd(e *env, use, short string, run func(ctx context.Context, db *pgx.Conn, name string) error) *cobra.Command {
	var conn connFlags
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := source.CheckSlotName(args[0]); err != nil {
				return err
			}
			db, err := source.Connect(cmd.Context(), conn.resolve(e))
			if err != nil {
				return err
			}
			defer db.Close(context.Background())
			return run(cmd.Context(), db, args[0])
		},
	}
	conn.register(c)
	return c
}

// slotError adds the fix to the slot errors users run into.
func slotError(err error, what string) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return fmt.Errorf("%s: %w", what, err)
	}
	hint := ""
	switch pgErr.Code {
	case "42710":
		hint = ": choose another name, or drop it first"
	case "42704":
		hint = ": see pgfeed slot list"
	case "55006":
		hint = ": stop the consumer streaming from it first"
	case "55000":
		hint = ": set wal_level = logical and restart PostgreSQL"
	case "53400":
		hint = ": raise max_replication_slots or drop unused slots"
	case "42501":
		hint = ": use a role with the REPLICATION attribute"
	default:
		return source.ExplainSQL(err, what)
	}
	return &source.UserError{Msg: fmt.Sprintf("%s: %s%s", what, pgErr.Message, hint), Err: err}
}
