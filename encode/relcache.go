package encode

import (
	"sync"

	"github.com/pgfeed/pgfeed/event"
)

// relCache keeps what an encoder derives from a relation's columns (a
// schema, a per-column plan) so it is built once per table and shape, not
// once per event. Entries are keyed by schema and table name; a table whose
// columns change gets its entry rebuilt, so the cache holds one entry per
// table whatever the stream does.
//
// Relations are immutable and shared between events, so the usual lookup is
// a pointer comparison. A different pointer with the same columns (the
// snapshot and the stream describe the same table separately) costs one
// comparison of the columns and then takes the fast path again.
type relCache[T any] struct {
	build func(*event.Relation) (T, error)

	mu sync.Mutex
	m  map[relKey]*relEntry[T]
}

type relKey struct{ schema, table string }

type relEntry[T any] struct {
	rel *event.Relation
	val T
}

// get returns the derived value for rel, building it when the table is new
// or its columns changed.
func (c *relCache[T]) get(rel *event.Relation) (T, error) {
	key := relKey{rel.Schema, rel.Table}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ent, ok := c.m[key]; ok {
		if ent.rel == rel {
			return ent.val, nil
		}
		if sameShape(ent.rel, rel) {
			ent.rel = rel
			return ent.val, nil
		}
	}
	val, err := c.build(rel)
	if err != nil {
		return val, err
	}
	if c.m == nil {
		c.m = make(map[relKey]*relEntry[T])
	}
	c.m[key] = &relEntry[T]{rel: rel, val: val}
	return val, nil
}

// sameShape reports whether two descriptions of a table would give the same
// encoding: same identity and keyedness, and the same columns with the same names, types,
// modifiers and key flags.
func sameShape(a, b *event.Relation) bool {
	if a.Schema != b.Schema || a.Table != b.Table || a.Identity != b.Identity || a.NoKey != b.NoKey || len(a.Columns) != len(b.Columns) {
		return false
	}
	for i := range a.Columns {
		x, y := &a.Columns[i], &b.Columns[i]
		if x.Name != y.Name || x.Key != y.Key || x.TypeMod != y.TypeMod || !sameType(x.Type, y.Type) {
			return false
		}
	}
	return true
}

func sameType(a, b *event.Type) bool {
	if a == b {
		return true
	}
	if a == nil || b == nil {
		return false
	}
	return a.OID == b.OID && a.Name == b.Name && a.Kind == b.Kind && sameType(a.Elem, b.Elem)
}
