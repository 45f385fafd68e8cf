// Package lease makes one pgfeed of several with the same configuration the
// leader: it holds a PostgreSQL session-level advisory lock on a dedicated
// connection for as long as it streams, and the others wait as standbys
// until the lock is free. The database itself arbitrates, so the pair needs
// nothing but the database they already share.
package lease

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrLost is wrapped by Err once the lease is gone: the lock connection
// failed, so another pgfeed may hold the lock now, and this one must stop
// streaming.
var ErrLost = errors.New("lost the lease")

// Options configure Acquire. The zero value of each field is sensible except
// Key, which every pgfeed of a pair must derive the same way (KeyFor).
type Options struct {
	// Key is the advisory lock's key.
	Key int64
	// Name is the lock connection's application_name, which a standby
	// prints to say who leads (default "pgfeed leader").
	Name string
	// Logger receives the standby and step-down lines (default: discarded).
	Logger *slog.Logger
	// RetryInterval is how often a standby tries the lock (default 1s).
	RetryInterval time.Duration
	// CheckInterval is how often the leader checks that its lock connection
	// is alive (default 1s). Each check must answer within twice that, or the
	// lease counts as lost: a leader that cannot tell whether it still holds
	// the lock must assume it does not.
	CheckInterval time.Duration
}

func (o *Options) defaults() {
	if o.Name == "" {
		o.Name = "pgfeed leader"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = time.Second
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = time.Second
	}
}

// KeyFor derives the lock key of a pipeline from the names of its slots, so
// that two pgfeeds streaming the same slots (the same configuration) contend
// for one lock, and pipelines on other slots do not. The key is positive.
func KeyFor(slots ...string) int64 {
	s := append([]string(nil), slots...)
	sort.Strings(s)
	h := fnv.New64a()
	h.Write([]byte("pgfeed lease\x00" + strings.Join(s, "\x00")))
	return int64(h.Sum64() &^ (1 << 63))
}

// Lease is a held lock. Its connection belongs to one goroutine, which
// checks it every CheckInterval.
type Lease struct {
	lost     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}

	mu  sync.Mutex
	err error
}

// Acquire blocks until this process holds the lock of opts.Key in the
// database of dsn, or ctx ends. While another process holds it, it logs once
// that it waits as standby, naming the holder, and tries again every
// RetryInterval; a database that cannot be reached is tried again too (it
// may be restarting), except for errors that retrying cannot fix (a wrong
// password, a missing database), which are returned.
func Acquire(ctx context.Context, dsn string, opts Options) (*Lease, error) {
	opts.defaults()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("lease: parsing the dsn: %w", err)
	}
	cfg.RuntimeParams["application_name"] = opts.Name
	waiting, unreachable := false, ""
	for {
		conn, held, err := try(ctx, cfg, opts.Key)
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, ctx.Err()
		case err != nil && permanent(err):
			return nil, fmt.Errorf("lease: connecting: %w", err)
		case err != nil:
			if msg := err.Error(); msg != unreachable {
				unreachable = msg
				opts.Logger.Warn("lease: cannot reach the database, trying again", "err", err)
			}
		case held:
			l := &Lease{lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
			opts.Logger.Info("lease: acquired, leading", "key", opts.Key)
			go l.hold(conn, opts)
			return l, nil
		case !waiting:
			waiting = true
			opts.Logger.Info("lease: another pgfeed holds the lease; waiting as standby", "leader", holder(ctx, conn, opts.Key))
			conn.Close(context.Background())
		default:
			conn.Close(context.Background())
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(opts.RetryInterval):
		}
	}
}

// try connects and tries the lock once. On success the connection is
// returned, holding the lock; otherwise it is returned open (held false) so
// that the caller may ask who holds it, or nil on error.
func try(ctx context.Context, cfg *pgx.ConnConfig, key int64) (*pgx.Conn, bool, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, false, err
	}
	var held bool
	if err := conn.QueryRow(cctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&held); err != nil {
		conn.Close(context.Background())
		return nil, false, err
	}
	return conn, held, nil
}

// holder names the session that holds the lock of key, as
// "application_name (pid N, client ADDR)", or "unknown" when the role may
// not see it.
func holder(ctx context.Context, conn *pgx.Conn, key int64) string {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var name, addr string
	var pid int32
	// A bigint advisory key is split over classid (high half) and objid
	// (low half), with objsubid 1.
	err := conn.QueryRow(cctx, `SELECT coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local'), a.pid
		FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		  AND l.classid = ($1::bigint >> 32)::oid AND l.objid = ($1::bigint & 4294967295)::oid
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		LIMIT 1`, key).Scan(&name, &addr, &pid)
	if err != nil {
		return "unknown"
	}
	return fmt.Sprintf("%s (pid %d, client %s)", name, pid, addr)
}

// permanent reports errors of connecting that retrying cannot fix.
func permanent(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// 28: invalid authorization; 3D000: no such database.
		return strings.HasPrefix(pgErr.Code, "28") || pgErr.Code == "3D000"
	}
	return false
}

// hold owns the lock connection: it checks it every CheckInterval, and on
// the first failure records the error and closes Lost. On Release it
// unlocks and closes the connection.
func (l *Lease) hold(conn *pgx.Conn, opts Options) {
	defer close(l.done)
	defer conn.Close(context.Background())
	t := time.NewTicker(opts.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", opts.Key) // closing the session unlocks too
			cancel()
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*opts.CheckInterval)
		// The lock lives as long as the session: a session that answers
		// still holds it (nothing else can release a session lock).
		_, err := conn.Exec(ctx, "SELECT 1")
		cancel()
		if err != nil {
			l.mu.Lock()
			l.err = fmt.Errorf("%w: its connection failed (%v), so another pgfeed may lead now", ErrLost, err)
			l.mu.Unlock()
			opts.Logger.Error("lease: lost; stepping down", "err", err)
			close(l.lost)
			return
		}
	}
}

// Lost is closed once the lease is lost; Err then says why.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Err returns nil while the lease is held, and an error wrapping ErrLost
// once it was lost.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Release gives the lock up for a standby to take, and closes the lock
// connection. Calling it again, or after the lease was lost, does nothing.
func (l *Lease) Release() {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
}
