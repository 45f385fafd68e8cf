package kafka

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pgfeed/pgfeed/event"
)

// Types given to values by their JSON form.
var (
	typeText  = event.BuiltinType(25)   // strings: text, numeric, dates, ... as they were printed
	typeInt   = event.BuiltinType(20)   // integer numbers: bigint
	typeFloat = event.BuiltinType(701)  // other numbers: double precision
	typeBool  = event.BuiltinType(16)   // booleans
	typeJSON  = event.BuiltinType(3802) // objects and arrays: jsonb, written back as they are
)

// wire is the native JSON event (event.Event.AppendJSON).
type wire struct {
	Op              string          `json:"op"`
	Schema          string          `json:"schema"`
	Table           string          `json:"table"`
	LSN             event.LSN       `json:"lsn"`
	CommitLSN       event.LSN       `json:"commit_lsn"`
	XID             uint32          `json:"xid"`
	CommitTime      string          `json:"commit_time"`
	Seq             int             `json:"seq"`
	Key             json.RawMessage `json:"key"`
	Before          json.RawMessage `json:"before"`
	After           json.RawMessage `json:"after"`
	Unchanged       []string        `json:"unchanged"`
	Cascade         bool            `json:"cascade"`
	RestartIdentity bool            `json:"restart_identity"`
	Prefix          string          `json:"prefix"`
	Content         *string         `json:"content"`
	ContentBase64   []byte          `json:"content_base64"`
	Transactional   bool            `json:"transactional"`
	EndLSN          event.LSN       `json:"end_lsn"`
}

// field is one column of a JSON row, in the order of the object.
type field struct {
	name string
	raw  json.RawMessage
}

// Decode parses one native JSON event. It is pure (bytes in, event out) and
// never panics on any input.
func Decode(b []byte) (*event.Event, error) {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("decoding native JSON event: %w", err)
	}
	op, err := event.ParseOp(w.Op)
	if err != nil {
		return nil, fmt.Errorf("decoding native JSON event: %w", err)
	}
	e := &event.Event{Op: op, Schema: w.Schema, Table: w.Table, LSN: w.LSN, CommitLSN: w.CommitLSN, XID: w.XID, Seq: w.Seq}
	if w.CommitTime != "" {
		if e.CommitTime, err = time.Parse(time.RFC3339Nano, w.CommitTime); err != nil {
			return nil, fmt.Errorf("decoding native JSON event: commit_time: %w", err)
		}
	}
	switch op {
	case event.OpInsert, event.OpUpdate, event.OpDelete, event.OpRead:
		if err := decodeRows(e, &w); err != nil {
			return nil, fmt.Errorf("decoding native JSON %s event: %w", op, err)
		}
	case event.OpTruncate:
		e.Cascade, e.RestartIdentity = w.Cascade, w.RestartIdentity
	case event.OpMessage:
		m := &event.Message{Prefix: w.Prefix, Transactional: w.Transactional}
		if w.Content != nil {
			m.Content = []byte(*w.Content)
		} else {
			m.Content = w.ContentBase64
		}
		e.Message = m
	case event.OpCommit:
		e.EndLSN = w.EndLSN
	case event.OpSchema:
		return nil, errors.New("decoding native JSON event: schema events carry no change; skip them")
	}
	return e, nil
}

func decodeRows(e *event.Event, w *wire) error {
	key, err := object(w.Key)
	if err != nil {
		return fmt.Errorf("key: %w", err)
	}
	before, err := object(w.Before)
	if err != nil {
		return fmt.Errorf("before: %w", err)
	}
	after, err := object(w.After)
	if err != nil {
		return fmt.Errorf("after: %w", err)
	}
	// Columns in the order the rows show them; a column sent in no row
	// (a key-only old row, an unchanged TOASTed value) still gets one.
	rel := &event.Relation{Schema: e.Schema, Table: e.Table, Identity: event.IdentityDefault}
	index := map[string]int{}
	add := func(name string, t *event.Type) int {
		if i, ok := index[name]; ok {
			rel.Columns[i].Type = widen(rel.Columns[i].Type, t)
			return i
		}
		index[name] = len(rel.Columns)
		rel.Columns = append(rel.Columns, event.Column{Name: name, Type: t})
		return len(rel.Columns) - 1
	}
	for _, rows := range [][]field{after, before, key} {
		for _, f := range rows {
			add(f.name, typeOf(f.raw))
		}
	}
	for _, name := range w.Unchanged {
		add(name, typeText)
	}
	for _, f := range key {
		rel.Columns[index[f.name]].Key = true
	}
	row := func(fields []field, raw json.RawMessage) (event.Row, error) {
		if isNull(raw) {
			return nil, nil
		}
		r := make(event.Row, len(rel.Columns))
		for _, f := range fields {
			v, err := value(f.raw)
			if err != nil {
				return nil, fmt.Errorf("column %q: %w", f.name, err)
			}
			r[index[f.name]] = v
		}
		return r, nil
	}
	if e.Before, err = row(before, w.Before); err != nil {
		return err
	}
	if e.After, err = row(after, w.After); err != nil {
		return err
	}
	if e.After != nil {
		for _, name := range w.Unchanged {
			e.After[index[name]] = event.Value{State: event.Unchanged}
		}
	}
	// A delete whose old row Postgres did not send still has its key.
	if e.Before == nil && e.After == nil && len(key) > 0 {
		if e.Before, err = row(key, w.Key); err != nil {
			return err
		}
	}
	for i := range rel.Columns {
		if rel.Columns[i].Type == nil {
			rel.Columns[i].Type = typeText
		}
	}
	e.Rel = rel
	return nil
}

// object returns the fields of a JSON object in order; null gives none.
func object(raw json.RawMessage) ([]field, error) {
	if isNull(raw) {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("want an object or null, got %s", raw)
	}
	var out []field
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("object key %v is not a string", tok)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, field{name, v})
	}
	return out, nil
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// typeOf infers a column's type from one JSON value; nil for null, which
// says nothing.
func typeOf(raw json.RawMessage) *event.Type {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	switch c := raw[0]; {
	case c == '"':
		return typeText
	case c == 't' || c == 'f':
		return typeBool
	case c == '{' || c == '[':
		return typeJSON
	case c == '-' || c >= '0' && c <= '9':
		if bytes.ContainsAny(raw, ".eE") {
			return typeFloat
		}
		return typeInt
	}
	return nil
}

// widen gives a column seen with two types the one that prints both: a
// double precision column shows "NaN" and "Infinity" as strings, and a
// whole number of it like an integer.
func widen(have, seen *event.Type) *event.Type {
	switch {
	case have == nil:
		return seen
	case seen == typeFloat && (have == typeText || have == typeInt):
		return typeFloat
	}
	return have
}

// value is the Postgres text form of a JSON value, as its inferred type
// reads it back.
func value(raw json.RawMessage) (event.Value, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case isNull(raw):
		return event.Value{State: event.Null}, nil
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return event.Value{}, err
		}
		return event.Value{State: event.Text, Raw: []byte(s)}, nil
	case string(raw) == "true":
		return event.Value{State: event.Text, Raw: []byte("t")}, nil
	case string(raw) == "false":
		return event.Value{State: event.Text, Raw: []byte("f")}, nil
	}
	return event.Value{State: event.Text, Raw: raw}, nil
}
