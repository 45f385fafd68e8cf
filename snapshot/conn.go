package snapshot

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// SessionSettings are the parameters every connection of this package sets,
// so that the text form of a value read here is byte for byte what the
// replication stream sends for it, and the JSON encoder can convert both the
// same way (timestamptz in UTC, ISO dates, shortest exact floats, hex bytea).
var SessionSettings = map[string]string{
	"DateStyle":          "ISO",
	"TimeZone":           "UTC",
	"extra_float_digits": "3",
	"IntervalStyle":      "postgres",
	"bytea_output":       "hex",
}

// Connect opens a normal (non-replication) connection with SessionSettings.
func Connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parsing DSN: %w", err)
	}
	for k, v := range SessionSettings {
		cfg.RuntimeParams[k] = v
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "pgfeed snapshot"
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting: %w", err)
	}
	return conn, nil
}
