package snapshot

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/catalog"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// testStream is a small logical replication consumer for tests: it peeks
// pgoutput changes through SQL functions, decodes them with pglogrepl into
// events, and advances the slot once a batch is applied. The package's
// real stream is built elsewhere; this one exists so that the watermark
// protocol is tested against the WAL PostgreSQL really writes.
type testStream struct {
	t     testing.TB
	conn  *pgx.Conn
	slot  string
	pub   string
	types *catalog.Types
	rels  map[uint32]*event.Relation
	tx    event.Event // header of the current transaction
}

// newTestStream creates a publication of all tables and a pgoutput slot.
func newTestStream(t testing.TB, dsn string) *testStream {
	conn := pgtest.Connect(t, dsn)
	// Slots belong to the cluster, so each test database gets its own.
	var slot string
	if err := conn.QueryRow(context.Background(), "SELECT current_database()").Scan(&slot); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, conn, "CREATE PUBLICATION p FOR ALL TABLES")
	if _, err := conn.Exec(context.Background(), "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c := pgtest.Connect(t, dsn)
		pgtest.Exec(t, c, "SELECT pg_drop_replication_slot('"+slot+"')")
	})
	return &testStream{t: t, conn: conn, slot: slot, pub: "p", types: catalog.NewTypes(), rels: map[uint32]*event.Relation{}}
}

// reopen returns a consumer on a new connection that starts over from the
// slot's confirmed position, as a restarted process would. (Stopping a
// poll midway may have closed the old connection.)
func (s *testStream) reopen(dsn string) *testStream {
	return &testStream{t: s.t, conn: pgtest.Connect(s.t, dsn), slot: s.slot, pub: s.pub, types: s.types, rels: map[uint32]*event.Relation{}}
}

// poll decodes what the slot holds now (whole transactions, about max
// changes), calls deliver for every event and commit after every
// transaction, then, when advance is set, confirms the batch to the slot.
// It returns the number of changes read.
// peekChanges reads what a slot holds, without confirming it.
const peekChanges = `SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes($1, NULL, $2,
	'proto_version', '1', 'publication_names', $3, 'messages', 'true')`

func (s *testStream) poll(ctx context.Context, max int, advance bool, deliver func(*event.Event), commit func(event.LSN)) (int, error) {
	type change struct {
		lsn  event.LSN
		data []byte
	}
	var changes []change
	peek := func() error {
		changes = changes[:0]
		rows, err := s.conn.Query(ctx, peekChanges, s.slot, max, s.pub)
		if err != nil {
			return err
		}
		for rows.Next() {
			var lsn string
			var data []byte
			if err := rows.Scan(&lsn, &data); err != nil {
				rows.Close()
				return err
			}
			l, err := event.ParseLSN(lsn)
			if err != nil {
				rows.Close()
				return err
			}
			changes = append(changes, change{l, data})
		}
		// The slot's error comes once the function runs, after Query returned.
		return rows.Err()
	}
	err := peek()
	var pgErr *pgconn.PgError
	for deadline := time.Now().Add(10 * time.Second); errors.As(err, &pgErr) && pgErr.Code == "55006" && time.Now().Before(deadline); {
		// The backend of a poll cancelled on another connection may hold the
		// slot a moment longer.
		time.Sleep(20 * time.Millisecond)
		err = peek()
	}
	if err != nil {
		return 0, err
	}
	var end event.LSN
	for _, c := range changes {
		msg, err := pglogrepl.Parse(c.data)
		if err != nil {
			return 0, err
		}
		if e, err := s.decode(ctx, c.lsn, msg); err != nil {
			return 0, err
		} else if e != nil {
			deliver(e)
		}
		if cm, ok := msg.(*pglogrepl.CommitMessage); ok {
			commit(event.LSN(cm.CommitLSN))
			end = event.LSN(cm.TransactionEndLSN)
		}
	}
	if advance && end != 0 {
		if _, err := s.conn.Exec(ctx, "SELECT pg_replication_slot_advance($1, $2::pg_lsn)", s.slot, end.String()); err != nil {
			return 0, err
		}
	}
	return len(changes), nil
}

func (s *testStream) decode(ctx context.Context, lsn event.LSN, msg pglogrepl.Message) (*event.Event, error) {
	ev := func(op event.Op, relID uint32) (*event.Event, error) {
		rel := s.rels[relID]
		if rel == nil {
			return nil, fmt.Errorf("change for unknown relation %d", relID)
		}
		e := s.tx
		e.Op, e.LSN, e.Schema, e.Table, e.Rel = op, lsn, rel.Schema, rel.Table, rel
		s.tx.Seq++
		e.Seq = s.tx.Seq
		return &e, nil
	}
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		s.tx = event.Event{XID: m.Xid, CommitLSN: event.LSN(m.FinalLSN), CommitTime: m.CommitTime}
	case *pglogrepl.RelationMessage:
		rel := &event.Relation{OID: m.RelationID, Schema: m.Namespace, Table: m.RelationName, Identity: m.ReplicaIdentity}
		var oids []uint32
		for _, c := range m.Columns {
			oids = append(oids, c.DataType)
		}
		if err := s.types.Resolve(ctx, s.conn, oids); err != nil {
			return nil, err
		}
		for _, c := range m.Columns {
			rel.Columns = append(rel.Columns, event.Column{Name: c.Name, Type: s.types.Type(c.DataType), TypeMod: c.TypeModifier, Key: c.Flags == 1})
		}
		s.rels[m.RelationID] = rel
	case *pglogrepl.InsertMessage:
		e, err := ev(event.OpInsert, m.RelationID)
		if err == nil {
			e.After = tuple(m.Tuple)
		}
		return e, err
	case *pglogrepl.UpdateMessage:
		e, err := ev(event.OpUpdate, m.RelationID)
		if err == nil {
			e.Before, e.After = tuple(m.OldTuple), tuple(m.NewTuple)
		}
		return e, err
	case *pglogrepl.DeleteMessage:
		e, err := ev(event.OpDelete, m.RelationID)
		if err == nil {
			e.Before = tuple(m.OldTuple)
		}
		return e, err
	case *pglogrepl.LogicalDecodingMessage:
		e := s.tx
		e.Op, e.LSN = event.OpMessage, lsn
		s.tx.Seq++
		e.Seq = s.tx.Seq
		e.Message = &event.Message{Prefix: m.Prefix, Content: m.Content, Transactional: m.Transactional}
		return &e, nil
	case *pglogrepl.TruncateMessage:
		return nil, fmt.Errorf("truncate is not used by these tests")
	}
	return nil, nil
}

func tuple(t *pglogrepl.TupleData) event.Row {
	if t == nil {
		return nil
	}
	row := make(event.Row, len(t.Columns))
	for i, c := range t.Columns {
		switch c.DataType {
		case 'n':
			row[i].State = event.Null
		case 'u':
			row[i].State = event.Unchanged
		case 't':
			row[i] = event.Value{State: event.Text, Raw: c.Data}
		}
	}
	return row
}

// consumer applies delivered events to a map per table keyed by the given
// key columns, like a sink that keeps the latest row, for the state
// invariant.
type consumer struct {
	mu   sync.Mutex
	keys map[string][]string            // table -> key column names
	rows map[string]map[string][]string // table -> key -> column values
	// reads counts read events per table.
	reads map[string]int
}

func newConsumer() *consumer {
	return &consumer{keys: map[string][]string{}, rows: map[string]map[string][]string{}, reads: map[string]int{}}
}

func (c *consumer) track(t *Table) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := t.KeyNames()
	if len(key) == 0 {
		for _, col := range t.Rel.Columns {
			key = append(key, col.Name)
		}
	}
	c.keys[t.Name()] = key
	c.rows[t.Name()] = map[string][]string{}
}

const nullText = "<NULL>"

func rowKey(rel *event.Relation, row event.Row, names []string) (string, bool) {
	var b strings.Builder
	for _, n := range names {
		i := rel.ColumnIndex(n)
		if i < 0 || i >= len(row) || (row[i].State != event.Text && row[i].State != event.Null) {
			return "", false
		}
		b.WriteString(render(row[i]))
		b.WriteByte(0)
	}
	return b.String(), true
}

func render(v event.Value) string {
	if v.State == event.Null {
		return nullText
	}
	return string(v.Raw)
}

func (c *consumer) apply(t testing.TB, e *event.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	name := e.Schema + "." + e.Table
	names, ok := c.keys[name]
	if !ok || !e.Op.IsRowChange() {
		return
	}
	rows := c.rows[name]
	if e.Op == event.OpRead {
		c.reads[name]++
	}
	if e.Before != nil {
		if k, ok := rowKey(e.Rel, e.Before, names); ok {
			delete(rows, k)
		}
	}
	if e.After == nil {
		if e.Before == nil {
			t.Errorf("delete without old key: %+v", e)
		}
		return
	}
	k, ok := rowKey(e.Rel, e.After, names)
	if !ok {
		t.Errorf("row without key: %+v", e)
		return
	}
	old := rows[k]
	vals := make([]string, len(e.After))
	for i, v := range e.After {
		if v.State == event.Unchanged && i < len(old) {
			vals[i] = old[i]
		} else {
			vals[i] = render(v)
		}
	}
	rows[k] = vals
}

// check compares the consumer's rows of table with SELECT of the table.
func (c *consumer) check(t testing.TB, ctx context.Context, conn *pgx.Conn, table *Table) {
	t.Helper()
	want := map[string][]string{}
	c.mu.Lock()
	names := c.keys[table.Name()]
	got := c.rows[table.Name()]
	c.mu.Unlock()
	_, err := ReadTable(ctx, conn, table, ReadOptions{}, func(e *event.Event) error {
		k, _ := rowKey(e.Rel, e.After, names)
		vals := make([]string, len(e.After))
		for i, v := range e.After {
			vals[i] = render(v)
		}
		want[k] = vals
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("%s: consumer has %d rows, table has %d", table.Name(), len(got), len(want))
	}
	n := 0
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if !slices.Equal(got[k], want[k]) && n < 5 {
			t.Errorf("%s: key %q: consumer %q, table %q", table.Name(), k, got[k], want[k])
			n++
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok && n < 10 {
			t.Errorf("%s: consumer has key %q, the table does not", table.Name(), k)
			n++
		}
	}
}
