package source

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// UserError is a failure the user caused and can fix: its message names the
// cause and the fix on one line. The CLI prints it as it is.
type UserError struct {
	Msg string
	Err error // the underlying error, if any
}

func (e *UserError) Error() string { return e.Msg }
func (e *UserError) Unwrap() error { return e.Err }

// explainConnect turns a connection failure into a UserError that names the
// server it tried (host:port) and, when the cause is one a user can fix,
// the fix.
func explainConnect(err error, what string) error {
	what = fmt.Sprintf("%s at %s", what, connTarget(err))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01":
			return &UserError{Msg: fmt.Sprintf("%s: password authentication failed for the user in the DSN: check the password (--dsn, PGPASSWORD or ~/.pgpass)", what), Err: err}
		case "28000":
			return &UserError{Msg: fmt.Sprintf("%s: %s: allow this user and host in pg_hba.conf", what, pgErr.Message), Err: err}
		case "3D000":
			return &UserError{Msg: fmt.Sprintf("%s: %s: check the database name in the DSN", what, pgErr.Message), Err: err}
		case "42501":
			if strings.Contains(pgErr.Message, "replication") {
				return &UserError{Msg: fmt.Sprintf("%s: the user lacks the REPLICATION attribute: run ALTER ROLE <user> REPLICATION as a superuser", what), Err: err}
			}
		case "53300":
			return &UserError{Msg: fmt.Sprintf("%s: %s: raise max_connections or max_wal_senders", what, pgErr.Message), Err: err}
		}
		return &UserError{Msg: fmt.Sprintf("%s: %s%s", what, pgErr.Message, sqlHint(pgErr)), Err: err}
	}
	var dnsErr *net.DNSError
	var opErr *net.OpError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return &UserError{Msg: fmt.Sprintf("%s: connection refused: is PostgreSQL running there, and are host and port in the DSN right?", what), Err: err}
	case errors.As(err, &dnsErr):
		return &UserError{Msg: fmt.Sprintf("%s: cannot resolve host %q: check the host in the DSN", what, dnsErr.Name), Err: err}
	case strings.Contains(err.Error(), "server refused TLS connection"):
		return &UserError{Msg: fmt.Sprintf("%s: the server does not accept TLS, but the DSN requires it (sslmode=require, verify-ca or verify-full): turn on ssl in postgresql.conf, or connect with sslmode=prefer or sslmode=disable", what), Err: err}
	case errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH), errors.Is(err, context.DeadlineExceeded), errors.As(err, &opErr):
		return &UserError{Msg: fmt.Sprintf("%s: cannot reach PostgreSQL: %v: check host and port in the DSN, and that no firewall is in the way", what, rootCause(err)), Err: err}
	}
	return &UserError{Msg: fmt.Sprintf("%s: %v", what, rootCause(err)), Err: err}
}

// connTarget is the host:port a connection tried (the first one, when the
// DSN lists several).
func connTarget(err error) string {
	var cerr *pgconn.ConnectError
	if errors.As(err, &cerr) && cerr.Config != nil {
		return net.JoinHostPort(cerr.Config.Host, strconv.Itoa(int(cerr.Config.Port)))
	}
	return "the DSN's host"
}

// sqlHints are fixes for the SQLSTATEs a user can cause, for the errors
// explainSQL and explainConnect have no more specific words for.
var sqlHints = map[string]string{
	"0A000": "this PostgreSQL version or configuration does not support it (pgfeed supports PostgreSQL 14 to 18; row filters need 15 or later)",
	"25006": "the server is read-only (a standby?): connect to the primary",
	"40001": "a concurrent transaction conflicted: retry",
	"40P01": "a concurrent transaction conflicted: retry",
	"42501": "grant the missing privilege or use a role that has it",
	"42601": "check the row filters (where) and names in the configuration",
	"42602": "check the name: use lower-case letters, digits and underscores",
	"42704": "check the name, or pass --create",
	"42710": "it exists already: use it, or choose another name",
	"42883": "the server lacks a function pgfeed needs: pgfeed supports PostgreSQL 14 to 18",
	"42P01": "check --tables",
	"42P07": "it exists already: use it, or choose another name",
	"53300": "raise max_connections or max_wal_senders",
	"53400": "raise max_replication_slots or drop unused slots (pgfeed slot list)",
	"55000": "the server is not in the state this needs: see the message",
	"55006": "another consumer is streaming from this slot; stop it or use another --slot",
	"57014": "the statement was cancelled (statement_timeout?): raise the timeout or retry",
	"57P01": "the server is shutting down: retry once it is up",
	"57P03": "the server is starting up or in recovery: retry once it accepts connections",
	"58P01": "a file the server needs is missing (the pgoutput plugin?): check the PostgreSQL installation",
}

// sqlHint is ": " and the fix for pgErr's SQLSTATE: ours, else Postgres's
// own hint when it gives one, else the SQLSTATE to look up.
func sqlHint(pgErr *pgconn.PgError) string {
	switch {
	case sqlHints[pgErr.Code] != "":
		return ": " + sqlHints[pgErr.Code]
	case pgErr.Hint != "":
		return fmt.Sprintf(": %s (SQLSTATE %s)", strings.TrimSuffix(pgErr.Hint, "."), pgErr.Code)
	}
	return fmt.Sprintf(" (SQLSTATE %s: see the PostgreSQL manual, appendix Error Codes)", pgErr.Code)
}

// rootCause is the innermost error of err; of a join (the attempts of a
// connection, one per address or TLS mode), that of the last attempt.
func rootCause(err error) error {
	for {
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			errs := u.Unwrap()
			if len(errs) == 0 {
				return err
			}
			err = errs[len(errs)-1]
		case interface{ Unwrap() error }:
			next := u.Unwrap()
			if next == nil {
				return err
			}
			err = next
		default:
			return err
		}
	}
}

// ExplainSQL turns the error of a statement about what into a one-line
// UserError with the fix for its SQLSTATE (see sqlHints), keeping the
// *pgconn.PgError in the chain. Other errors are wrapped as they are.
func ExplainSQL(err error, what string) error { return explainSQL(err, what) }

// explainSQL turns the errors of setup statements a user can fix into
// UserErrors, keeping SQLSTATE in the chain.
func explainSQL(err error, what string) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return fmt.Errorf("%s: %w", what, err)
	}
	hint := sqlHint(pgErr)
	return &UserError{Msg: fmt.Sprintf("%s: %s%s", what, pgErr.Message, hint), Err: err}
}
