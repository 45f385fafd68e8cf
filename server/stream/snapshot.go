package stream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/snapshot"
	"github.com/pgfeed/pgfeed/source"
)

// snapshotRequest is pgdeltastream's body, plus After for keyset pages.
type snapshotRequest struct {
	SlotName string   `json:"slotName"`
	Table    string   `json:"table"`
	Offset   *int64   `json:"offset"`
	Limit    *int64   `json:"limit"`
	OrderBy  *orderBy `json:"order_by"`
	// After holds the sort columns' values of the last row of the previous
	// page: the page starts after it. The sort columns are order_by's
	// column, if any, then the table's key.
	After map[string]json.RawMessage `json:"after"`
}

type orderBy struct {
	Column string `json:"column"`
	Order  string `json:"order"`
}

// maxRequestBytes bounds a snapshot request body.
const maxRequestBytes = 64 << 10

func decodeRequest(r *http.Request, w http.ResponseWriter, v any) *apiError {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errorf(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", maxRequestBytes))
		}
		return errorf(http.StatusBadRequest, "malformed JSON body: "+err.Error()+`: send {"slotName":"...","table":"...","offset":0,"limit":100,"order_by":{"column":"id","order":"ASC"}}`)
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "malformed JSON body: more than one JSON value")
	}
	return nil
}

// handleSnapshotData answers one page of a table's rows, read inside the
// slot's exported snapshot, as a JSON array of objects in the native type
// mapping (DESIGN.md): the rows as they were at the slot's consistent point,
// which its stream continues.
func (s *Server) handleSnapshotData(w http.ResponseWriter, r *http.Request) {
	if !method(w, r, http.MethodPost) {
		return
	}
	var req snapshotRequest
	if err := decodeRequest(r, w, &req); err != nil {
		writeError(w, err)
		return
	}
	if err := s.snapshotPage(r.Context(), w, &req); err != nil {
		writeError(w, err)
	}
}

// page is a checked snapshot request.
type page struct {
	offset, limit int64
	column        string // order_by column, "" for none
	desc          bool
}

func (s *Server) checkRequest(req *snapshotRequest) (page, *apiError) {
	p := page{limit: int64(s.opts.MaxRows)}
	if req.Table == "" {
		return p, errorf(http.StatusBadRequest, `table is missing: name a table ("orders" or "app.orders")`)
	}
	if req.Offset != nil {
		if *req.Offset < 0 {
			return p, errorf(http.StatusBadRequest, fmt.Sprintf("offset %d is negative: use 0 or more", *req.Offset))
		}
		p.offset = *req.Offset
	}
	if req.Limit != nil {
		switch {
		case *req.Limit < 0:
			return p, errorf(http.StatusBadRequest, fmt.Sprintf("limit %d is negative: use 1 to %d", *req.Limit, s.opts.MaxRows))
		case *req.Limit > int64(s.opts.MaxRows):
			return p, errorf(http.StatusBadRequest, fmt.Sprintf("limit %d is above %d, the most rows of one page (--max-rows): page with offset or after", *req.Limit, s.opts.MaxRows))
		}
		p.limit = *req.Limit
	}
	if req.OrderBy != nil {
		if req.OrderBy.Column == "" {
			return p, errorf(http.StatusBadRequest, "order_by.column is missing: name a column of the table")
		}
		p.column = req.OrderBy.Column
		switch strings.ToUpper(req.OrderBy.Order) {
		case "", "ASC":
		case "DESC":
			p.desc = true
		default:
			return p, errorf(http.StatusBadRequest, fmt.Sprintf("order_by.order %q: use ASC or DESC", req.OrderBy.Order))
		}
	}
	return p, nil
}

func (s *Server) snapshotPage(ctx context.Context, w http.ResponseWriter, req *snapshotRequest) *apiError {
	p, aerr := s.checkRequest(req)
	if aerr != nil {
		return aerr
	}
	sl, err := s.lookup(ctx, req.SlotName)
	if err != nil {
		return asAPIError(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return serverError(source.ExplainSQL(err, "connecting to PostgreSQL"))
	}
	defer conn.Release()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return serverError(source.ExplainSQL(err, "starting a snapshot read"))
	}
	defer tx.Rollback(context.Background())
	if aerr := s.importSnapshot(ctx, sl, tx); aerr != nil {
		return aerr
	}
	t, aerr := s.describe(ctx, tx, sl.name, req.Table)
	if aerr != nil {
		return aerr
	}
	query, args, aerr := buildQuery(t, p, req.After)
	if aerr != nil {
		return aerr
	}
	rows, err := tx.Query(ctx, query, append([]any{pgx.QueryResultFormats{pgx.TextFormatCode}}, args...)...)
	if err != nil {
		return queryError(err, t)
	}
	defer rows.Close()
	// The first row (or the end) before the status line, so that the
	// errors a query meets at its start are still a clean 4xx or 5xx.
	more := rows.Next()
	if err := rows.Err(); err != nil {
		return queryError(err, t)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	buf := []byte{'['}
	for n := 0; more; n++ {
		if n > 0 {
			buf = append(buf, ',')
		}
		buf = appendRow(buf, t.Rel, rows.RawValues())
		if len(buf) >= 32<<10 {
			if _, err := bw.Write(buf); err != nil {
				return nil // the client left
			}
			buf = buf[:0]
		}
		more = rows.Next()
	}
	if err := rows.Err(); err != nil {
		// The status is sent: a cut-off array tells the client the page
		// is incomplete, and the log says why.
		s.log.Warn("snapshot page cut short", "slot", sl.name, "table", t.Name(), "err", err)
		_, _ = bw.Write(buf)
		_ = bw.Flush()
		return nil
	}
	buf = append(buf, "]\n"...)
	_, _ = bw.Write(buf)
	_ = bw.Flush()
	return nil
}

// importSnapshot makes tx read in the slot's held snapshot.
func (s *Server) importSnapshot(ctx context.Context, sl *slot, tx pgx.Tx) *apiError {
	sl.snapMu.RLock()
	defer sl.snapMu.RUnlock()
	h := sl.snap
	if h == nil {
		return errorf(http.StatusConflict, fmt.Sprintf("the snapshot of slot %s is no longer held: it is released when the stream starts or %s after /v1/init (--snapshot-hold); call /v1/init for a new slot to read a snapshot again", sl.name, s.opts.SnapshotHold))
	}
	// h.id matched snapshotID when the slot was made.
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+h.id+"'"); err != nil {
		return serverError(source.ExplainSQL(err, "importing the snapshot of slot "+sl.name))
	}
	return nil
}

// describe finds the table in the catalog (as of the snapshot) and checks
// that the slot's publication covers it: the snapshot is there to start
// the slot's stream, and other tables (the catalogs, say) are not served.
func (s *Server) describe(ctx context.Context, tx pgx.Tx, slotName, table string) (*snapshot.Table, *apiError) {
	t, err := snapshot.Describe(ctx, tx, s.types, table)
	if err != nil {
		var nf *snapshot.NotFoundError
		var pe *snapshot.PermissionError
		var pg *pgconn.PgError
		switch {
		case errors.As(err, &nf):
			return nil, errorf(http.StatusNotFound, fmt.Sprintf("table %q does not exist: name a table of the database, as psql takes it (orders, app.orders, \"Mixed Case\")", table))
		case errors.As(err, &pe):
			return nil, errorf(http.StatusForbidden, pe.Error())
		case errors.As(err, &pg) && (pg.Code == "22023" || pg.Code == "42602" || strings.HasPrefix(pg.Code, "42")):
			return nil, errorf(http.StatusBadRequest, fmt.Sprintf("invalid table name %q: %s", table, pg.Message))
		}
		return nil, serverError(err)
	}
	if tok := tokenOf(ctx); !tok.allows(t.Rel.Schema, t.Rel.Table) {
		return nil, errorf(http.StatusForbidden, fmt.Sprintf("the token may not read table %s: its tables are %s", t.Name(), strings.Join(tok.Tables, ", ")))
	}
	var published bool
	err = tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication_tables
		WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)`, slotName, t.Rel.Schema, t.Rel.Table).Scan(&published)
	if err != nil {
		return nil, serverError(source.ExplainSQL(err, "reading the publication of slot "+slotName))
	}
	if !published {
		return nil, errorf(http.StatusNotFound, fmt.Sprintf("table %s is not published to slot %s: its snapshot serves the tables the slot streams", t.Name(), slotName))
	}
	return t, nil
}

// buildQuery writes the page's SELECT. Every name in it comes from the
// catalog and is quoted; every value is a parameter.
func buildQuery(t *snapshot.Table, p page, after map[string]json.RawMessage) (string, []any, *apiError) {
	var sortCols []int
	if p.column != "" {
		i := t.Rel.ColumnIndex(p.column)
		if i < 0 {
			names := make([]string, len(t.Rel.Columns))
			for j, c := range t.Rel.Columns {
				names[j] = c.Name
			}
			return "", nil, errorf(http.StatusBadRequest, fmt.Sprintf("order_by column %q does not exist in table %s: use one of %s", p.column, t.Name(), strings.Join(names, ", ")))
		}
		sortCols = append(sortCols, i)
	}
	// The key makes the order total, so that pages neither repeat nor skip rows.
	for _, k := range t.Key {
		if !slices.Contains(sortCols, k) {
			sortCols = append(sortCols, k)
		}
	}
	var b strings.Builder
	b.WriteString("SELECT ")
	for i, c := range t.Rel.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(pgx.Identifier{c.Name}.Sanitize())
	}
	if len(t.Rel.Columns) == 0 {
		b.WriteString("NULL")
	}
	b.WriteString(" FROM ")
	b.WriteString(t.Ident().Sanitize())
	if t.Filter != "" {
		b.WriteString(" WHERE (" + t.Filter + ")") // from the catalog, never from the request
	}
	var args []any
	if after != nil {
		if len(t.Key) == 0 {
			return "", nil, errorf(http.StatusBadRequest, fmt.Sprintf("table %s has no primary key or unique NOT NULL index, which after needs: page with offset", t.Name()))
		}
		var names []string
		for _, i := range sortCols {
			names = append(names, t.Rel.Columns[i].Name)
		}
		if len(after) != len(sortCols) {
			return "", nil, errorf(http.StatusBadRequest, fmt.Sprintf("after must hold exactly the sort columns of the page, %s, with the values of the last row read", strings.Join(names, ", ")))
		}
		if t.Filter != "" {
			b.WriteString(" AND (")
		} else {
			b.WriteString(" WHERE (")
		}
		for n, i := range sortCols {
			c := t.Rel.Columns[i]
			raw, ok := after[c.Name]
			if !ok {
				return "", nil, errorf(http.StatusBadRequest, fmt.Sprintf("after lacks column %q: give %s", c.Name, strings.Join(names, ", ")))
			}
			v, err := afterValue(raw)
			if err != nil {
				return "", nil, errorf(http.StatusBadRequest, fmt.Sprintf("after.%s: %v", c.Name, err))
			}
			args = append(args, v)
			if n > 0 {
				b.WriteString(", ")
			}
			b.WriteString(pgx.Identifier{c.Name}.Sanitize())
		}
		if p.desc {
			b.WriteString(") < (")
		} else {
			b.WriteString(") > (")
		}
		for n, i := range sortCols {
			if n > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "CAST($%d::text AS %s)", n+1, castType(t.Rel.Columns[i].Type))
		}
		b.WriteString(")")
	}
	b.WriteString(" ORDER BY ")
	if len(sortCols) == 0 {
		// No key: the physical order, stable within one snapshot.
		b.WriteString("tableoid, ctid")
	}
	for n, i := range sortCols {
		if n > 0 {
			b.WriteString(", ")
		}
		b.WriteString(pgx.Identifier{t.Rel.Columns[i].Name}.Sanitize())
		if p.desc {
			b.WriteString(" DESC")
		}
	}
	args = append(args, p.offset, p.limit)
	fmt.Fprintf(&b, " OFFSET $%d LIMIT $%d", len(args)-1, len(args))
	return b.String(), args, nil
}

// castType names a column's type for the cast of an after value: the
// type's name as format_type prints it, from the catalog, except where the
// name without a length means a length of 1 ("character", "bit"), which
// would cut the value.
func castType(t *event.Type) string {
	switch t.Name {
	case "character":
		return "pg_catalog.bpchar"
	case "bit":
		return "pg_catalog.varbit"
	}
	return t.Name
}

// afterValue turns one JSON value of after into the text form of a
// parameter: strings as they are, numbers and booleans as written.
func afterValue(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return "", errors.New("null is not a position: give the value of the last row read")
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", err
		}
		return s, nil
	case raw[0] == '{' || raw[0] == '[':
		return string(raw), nil // json, jsonb or array columns in their JSON text
	}
	if string(raw) == "true" || string(raw) == "false" {
		return string(raw), nil
	}
	if _, err := strconv.ParseFloat(string(raw), 64); err != nil {
		return "", fmt.Errorf("%s is not a JSON value", raw)
	}
	return string(raw), nil
}

// queryError reports a failing page query: a value of after that does not
// fit its column is the client's; anything else is the server's.
func queryError(err error, t *snapshot.Table) *apiError {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && (strings.HasPrefix(pg.Code, "22") || pg.Code == "42883") {
		return errorf(http.StatusBadRequest, fmt.Sprintf("reading table %s: %s (check the values of after)", t.Name(), pg.Message))
	}
	return serverError(source.ExplainSQL(err, "reading table "+t.Name()))
}

// appendRow appends a row as a JSON object, each value in the native type
// mapping: the same values the stream's json frames carry.
func appendRow(dst []byte, rel *event.Relation, raw [][]byte) []byte {
	dst = append(dst, '{')
	for i, c := range rel.Columns {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = event.AppendJSONString(dst, c.Name)
		dst = append(dst, ':')
		if i >= len(raw) || raw[i] == nil {
			dst = append(dst, "null"...)
			continue
		}
		dst = event.Value{State: event.Text, Raw: raw[i]}.AppendJSON(dst, c.Type)
	}
	return append(dst, '}')
}

func asAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return serverError(err)
}
