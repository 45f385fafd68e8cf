package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgfeed/pgfeed/checkpoint"
	"github.com/pgfeed/pgfeed/config"
	"github.com/pgfeed/pgfeed/internal/lease"
	"github.com/pgfeed/pgfeed/source"
)

// openStore opens the checkpoint store the configuration names: the local
// bbolt file, or the tables in PostgreSQL that a standby can read too.
func openStore(ctx context.Context, cfg *config.Config) (checkpoint.Storage, error) {
	if cfg.UsesPostgresCheckpoints() {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		s, err := checkpoint.OpenPG(cctx, cfg.CheckpointDSN)
		if err != nil {
			return nil, &source.UserError{Msg: fmt.Sprintf("checkpoint = \"postgres\": %v", err), Err: err}
		}
		return s, nil
	}
	if dir := filepath.Dir(cfg.Checkpoint); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("checkpoint: %w", err)
		}
	}
	s, err := checkpoint.Open(cfg.Checkpoint)
	if err != nil {
		return nil, err // names the file, and for a damaged one the way out
	}
	return s, nil
}

// takeLease blocks, with [ha] lease = "postgres", until this pgfeed leads:
// it holds the advisory lock of the configuration's slots, and the slots
// are free of the previous leader's walsenders. It returns nil, nil
// without a lease configured, and when ctx ends while it waits.
func takeLease(ctx context.Context, cfg *config.Config, log *slog.Logger) (*lease.Lease, error) {
	if cfg.HA.Lease != config.LeasePostgres {
		return nil, nil
	}
	var ids []string
	for _, s := range cfg.Sources {
		if pg, ok := s.Settings.(*config.PostgresSource); ok {
			ids = append(ids, pg.Slot)
		} else {
			ids = append(ids, "source:"+s.Name) // a Kafka source has no slot
		}
	}
	host, _ := os.Hostname()
	held, err := lease.Acquire(ctx, cfg.CheckpointDSN, lease.Options{
		Key: lease.KeyFor(ids...), Name: fmt.Sprintf("pgfeed %s pid %d", host, os.Getpid()), Logger: log,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil
		}
		return nil, &source.UserError{Msg: fmt.Sprintf("[ha] lease: %v", err), Err: err}
	}
	if err := waitSlotsFree(ctx, cfg, log); err != nil {
		held.Release()
		if ctx.Err() != nil {
			return nil, nil
		}
		return nil, err
	}
	return held, nil
}

// slotFreeWait bounds how long a new leader waits for a slot to be
// released. The walsender of a leader that died notices its closed socket
// at once in the usual case, but after a network cut only at
// wal_sender_timeout (60s by default). Past this wait the source opens
// anyway, and reports the slot that is still active.
const slotFreeWait = 90 * time.Second

// waitSlotsFree waits until no walsender streams from the slots of the
// configuration: the previous leader's may outlive it for a moment, and
// the stream would refuse an active slot.
func waitSlotsFree(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	deadline := time.Now().Add(slotFreeWait)
	for _, s := range cfg.Sources {
		pg, ok := s.Settings.(*config.PostgresSource)
		if !ok {
			continue
		}
		logged := false
		for {
			pid, err := slotActivePID(ctx, pg.DSN, pg.Slot)
			if err != nil || pid == 0 || time.Now().After(deadline) {
				// An error is the source's to report, in its words.
				break
			}
			if !logged {
				logged = true
				log.Info("lease: waiting for the previous leader to release the slot", "source", s.Name, "slot", pg.Slot, "active_pid", pid)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// slotActivePID is the pid of the walsender streaming from slot, 0 when
// none is (or there is no such slot yet).
func slotActivePID(ctx context.Context, dsn, slot string) (int32, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	db, err := source.Connect(cctx, dsn)
	if err != nil {
		return 0, err
	}
	defer db.Close(context.Background())
	var pid *int32
	err = db.QueryRow(cctx, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&pid)
	if err != nil || pid == nil {
		return 0, ignoreNoRows(err)
	}
	return *pid, nil
}

func ignoreNoRows(err error) error {
	if err != nil && errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	return err
}
