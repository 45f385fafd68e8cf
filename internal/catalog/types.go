// Package catalog reads what pgfeed needs from PostgreSQL's system catalog:
// the mapping of type OIDs that are not built in (enums, domains, arrays of
// them, extension types) to event.Type.
package catalog

import (
	"context"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/event"
)

// Querier is the part of *pgx.Conn (or a pool) that catalog lookups use.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Types caches resolved types. It is safe for concurrent use.
type Types struct {
	mu    sync.RWMutex
	cache map[uint32]*event.Type
}

// NewTypes returns an empty cache; built-in types never need a lookup.
func NewTypes() *Types { return &Types{cache: map[uint32]*event.Type{}} }

// Type returns the type of oid: built-in, resolved earlier, or UnknownType
// (its values pass through as text) when Resolve never saw it.
func (t *Types) Type(oid uint32) *event.Type {
	if b := event.BuiltinType(oid); b != nil {
		return b
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if typ, ok := t.cache[oid]; ok {
		return typ
	}
	return event.UnknownType(oid)
}

// Missing returns the OIDs among oids that are neither built in nor cached.
func (t *Types) Missing(oids []uint32) []uint32 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []uint32
	for _, oid := range oids {
		if event.BuiltinType(oid) != nil {
			continue
		}
		if _, ok := t.cache[oid]; !ok {
			out = append(out, oid)
		}
	}
	return out
}

type typeRow struct {
	oid, elem, base uint32
	name            string
	typtype         byte
	delim           byte
}

// Resolve looks up the given OIDs, and the element and base types they
// depend on, in pg_type. OIDs that no longer exist (a type dropped since the
// change was written) resolve to UnknownType, so decoding never stops on them.
func (t *Types) Resolve(ctx context.Context, q Querier, oids []uint32) error {
	rows := map[uint32]typeRow{}
	want := t.Missing(oids)
	for len(want) > 0 {
		found, err := queryTypes(ctx, q, want)
		if err != nil {
			return err
		}
		var next []uint32
		for _, oid := range want {
			r, ok := found[oid]
			if !ok {
				r = typeRow{oid: oid, name: "unknown", typtype: 'b', delim: ','}
			}
			rows[oid] = r
			for _, dep := range []uint32{r.elem, r.base} {
				if dep == 0 || event.BuiltinType(dep) != nil {
					continue
				}
				if _, seen := rows[dep]; seen {
					continue
				}
				if len(t.Missing([]uint32{dep})) > 0 {
					next = append(next, dep)
				}
			}
		}
		want = next
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	var build func(oid uint32, depth int) *event.Type
	build = func(oid uint32, depth int) *event.Type {
		if b := event.BuiltinType(oid); b != nil {
			return b
		}
		if typ, ok := t.cache[oid]; ok {
			return typ
		}
		r, ok := rows[oid]
		if !ok || depth > 16 {
			return event.UnknownType(oid)
		}
		typ := &event.Type{OID: oid, Name: r.name, Kind: event.KindText, Delim: r.delim}
		switch {
		case r.typtype == 'd' && r.base != 0:
			// A domain is encoded as its base type, under its own name.
			base := build(r.base, depth+1)
			typ.Kind, typ.Elem = base.Kind, base.Elem
		case r.elem != 0 && r.typtype == 'b' && isArrayName(r.name):
			typ.Kind, typ.Elem = event.KindArray, build(r.elem, depth+1)
		}
		t.cache[oid] = typ
		return typ
	}
	for oid := range rows {
		build(oid, 0)
	}
	return nil
}

// isArrayName tells true arrays (whose format_type ends in "[]") from
// fixed-length types such as point that also set typelem.
func isArrayName(name string) bool {
	return len(name) > 2 && name[len(name)-2:] == "[]"
}

func queryTypes(ctx context.Context, q Querier, oids []uint32) (map[uint32]typeRow, error) {
	rows, err := q.Query(ctx, `SELECT oid, format_type(oid, NULL), typtype, typelem, typbasetype, typdelim
		FROM pg_catalog.pg_type WHERE oid = ANY($1)`, oids)
	if err != nil {
		return nil, fmt.Errorf("looking up types %v: %w", oids, err)
	}
	found := map[uint32]typeRow{}
	for rows.Next() {
		var r typeRow
		var typtype, delim string
		if err := rows.Scan(&r.oid, &r.name, &typtype, &r.elem, &r.base, &delim); err != nil {
			return nil, fmt.Errorf("reading pg_type: %w", err)
		}
		if typtype != "" {
			r.typtype = typtype[0]
		}
		r.delim = ','
		if delim != "" {
			r.delim = delim[0]
		}
		found[r.oid] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("looking up types: %w", err)
	}
	return found, nil
}
