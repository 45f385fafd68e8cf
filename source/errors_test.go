package source

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// Every SQLSTATE gets a fix: ours for the codes users cause, else the
// server's own HINT, else the code to look up; never a bare message.
func TestExplainSQLHints(t *testing.T) {
	tests := []struct {
		err  *pgconn.PgError
		want string
	}{
		{&pgconn.PgError{Code: "25006", Message: "cannot execute CREATE PUBLICATION in a read-only transaction"},
			"creating publication: cannot execute CREATE PUBLICATION in a read-only transaction: the server is read-only (a standby?): connect to the primary"},
		{&pgconn.PgError{Code: "42710", Message: `publication "p" already exists`},
			`creating publication: publication "p" already exists: it exists already: use it, or choose another name`},
		{&pgconn.PgError{Code: "57P03", Message: "the database system is starting up"},
			"creating publication: the database system is starting up: the server is starting up or in recovery: retry once it accepts connections"},
		{&pgconn.PgError{Code: "XX999", Message: "something odd", Hint: "Do the thing."},
			"creating publication: something odd: Do the thing (SQLSTATE XX999)"},
		{&pgconn.PgError{Code: "XX999", Message: "something odd"},
			"creating publication: something odd (SQLSTATE XX999: see the PostgreSQL manual, appendix Error Codes)"},
	}
	for _, tt := range tests {
		err := ExplainSQL(tt.err, "creating publication")
		var ue *UserError
		if !errors.As(err, &ue) || ue.Msg != tt.want {
			t.Errorf("%s:\n got %v\nwant %s", tt.err.Code, err, tt.want)
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != tt.err.Code {
			t.Errorf("%s: the PgError is not in the chain", tt.err.Code)
		}
	}
}
