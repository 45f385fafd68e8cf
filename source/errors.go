package source

import (
	"errors"
	"fmt"
	"net"
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

// explainConnect turns a connection failure into a UserError when the cause
// is one a user can fix.
func explainConnect(err error, what string) error {
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
			return &UserError{Msg: fmt.Sprintf("%s: %s", what, pgErr.Message), Err: err}
		case "53300":
			return &UserError{Msg: fmt.Sprintf("%s: %s: raise max_connections or max_wal_senders", what, pgErr.Message), Err: err}
		}
		return &UserError{Msg: fmt.Sprintf("%s: %s (SQLSTATE %s)", what, pgErr.Message, pgErr.Code), Err: err}
	}
	var opErr *net.OpError
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return &UserError{Msg: fmt.Sprintf("%s: connection refused at %s: is PostgreSQL running there, and are host and port in the DSN right?", what, connTarget(err)), Err: err}
	case errors.As(err, &dnsErr):
		return &UserError{Msg: fmt.Sprintf("%s: cannot resolve host %q: check the host in the DSN", what, dnsErr.Name), Err: err}
	case errors.As(err, &opErr), errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return &UserError{Msg: fmt.Sprintf("%s: cannot reach PostgreSQL at %s: %v", what, connTarget(err), rootCause(err)), Err: err}
	}
	return fmt.Errorf("%s: %w", what, err)
}

func connTarget(err error) string {
	var cerr *pgconn.ConnectError
	if errors.As(err, &cerr) && cerr.Config != nil {
		return fmt.Sprintf("%s:%d", cerr.Config.Host, cerr.Config.Port)
	}
	return "the DSN's host"
}

func rootCause(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

// explainSQL turns the errors of setup statements a user can fix into
// UserErrors, keeping SQLSTATE in the chain.
func explainSQL(err error, what string) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return fmt.Errorf("%s: %w", what, err)
	}
	hint := ""
	switch pgErr.Code {
	case "42501":
		hint = ": grant the missing privilege or use a role that has it"
	case "55006":
		hint = ": another consumer is streaming from this slot; stop it or use another --slot"
	case "42P01":
		hint = ": check --tables"
	case "42704":
		hint = ": check the name, or pass --create"
	case "53400":
		hint = ": raise max_replication_slots or drop unused slots (pgfeed slot list)"
	}
	return &UserError{Msg: fmt.Sprintf("%s: %s%s", what, pgErr.Message, hint), Err: err}
}
