package route

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/sink"
)

// MaskText is what a masked value becomes. A fixed text rather than a hash:
// a hash of a low-entropy value (an email, a phone number) is reversed by
// hashing candidates, so it would not hide what masking is asked to hide.
const MaskText = "***"

// maskRaw is shared by every masked value. Its capacity is its length, so a
// consumer that appends to a Raw gets a copy instead of writing into it.
var maskRaw = []byte(MaskText)[:len(MaskText):len(MaskText)]

// textType is the type of a masked column: "***" is no longer an integer or a
// date, and encoders that derive a schema from the relation (avro, debezium)
// must see a text column.
var textType = event.BuiltinType(25)

// Options are a sink's routing settings, as its config writes them. The zero
// value passes every event through unchanged, to "{schema}.{table}".
type Options struct {
	// Include lists table patterns (see ParseTablePattern) the sink gets;
	// empty means every table.
	Include []string
	// Exclude lists table patterns the sink never gets, included or not.
	Exclude []string
	// Drop lists column patterns (see ParseColumnPattern) removed from the
	// events: from their rows, their key and their relation.
	Drop []string
	// Mask lists column patterns whose values become MaskText, in the rows
	// and the key alike; the column's type becomes text. SQL NULL stays
	// NULL, and an unchanged TOASTed value stays unsent. A column both
	// dropped and masked is dropped. Masking a key column gives every row
	// the same message key, which breaks partitioning and compaction by
	// key: drop such a column, or leave it alone.
	Mask []string
	// Default is the destination template (see ParseTemplate) of table
	// events; empty means DefaultTemplate.
	Default string
	// Tables maps a table name (see ParseTableName) to its own destination
	// template, used instead of Default.
	Tables map[string]string
	// Other is the destination template of events that belong to no table
	// (message, begin, commit); empty means DefaultOtherTemplate.
	Other string
}

// Router applies a sink's Options to events. It is safe for concurrent use.
//
// The work that depends only on a table (include/exclude, the columns to
// drop or mask, the destination) is done once per Relation and cached, so
// Apply on an event of a known relation matches no pattern and renders no
// template.
type Router struct {
	include, exclude []TablePattern
	drop, mask       []ColumnPattern
	def, other       *Template
	tables           map[tableName]*Template
	otherTopics      [numOps]string

	plans  sync.Map // *event.Relation → *plan
	nplans atomic.Int64
}

type tableName struct{ schema, table string }

// numOps sizes the per-op topic caches: every op pgfeed emits is below it.
const numOps = int(event.OpSchema) + 1

// maxPlans bounds the plan cache. Each DDL on a table gives it a new
// Relation, and so a new plan; rather than track which relations are
// stale, the cache is dropped when it grows past this, and refills.
const maxPlans = 4096

// plan is what a Router does to the events of one Relation.
type plan struct {
	keep bool
	// rel is the relation of the events Apply returns: the source's own
	// when no column is dropped or masked, else a copy.
	rel *event.Relation
	// cols holds, for each column of rel, its index in the source rows, and
	// masked whether it is masked; cols is nil when rows pass unchanged.
	cols   []int
	masked []bool
	t      *Template
	topics [numOps]string
}

// New compiles the options. The error lists every invalid option, each
// named by its field, e.g. "include[1]: invalid pattern ...".
func New(o Options) (*Router, error) {
	var errs []error
	r := &Router{tables: make(map[tableName]*Template, len(o.Tables))}
	tables := func(name string, in []string) []TablePattern {
		var out []TablePattern
		for i, s := range in {
			p, err := ParseTablePattern(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s[%d]: %w", name, i, err))
			}
			out = append(out, p)
		}
		return out
	}
	columns := func(name string, in []string) []ColumnPattern {
		var out []ColumnPattern
		for i, s := range in {
			p, err := ParseColumnPattern(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s[%d]: %w", name, i, err))
			}
			out = append(out, p)
		}
		return out
	}
	template := func(name, s, def string) *Template {
		if s == "" {
			s = def
		}
		t, err := ParseTemplate(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		return t
	}
	r.include = tables("include", o.Include)
	r.exclude = tables("exclude", o.Exclude)
	r.drop = columns("drop", o.Drop)
	r.mask = columns("mask", o.Mask)
	r.def = template("default", o.Default, DefaultTemplate)
	r.other = template("other", o.Other, DefaultOtherTemplate)
	for name, s := range o.Tables {
		schema, table, err := ParseTableName(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("tables[%q]: %w", name, err))
			continue
		}
		r.tables[tableName{schema, table}] = template(fmt.Sprintf("tables[%q]", name), s, "")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for op := range numOps {
		r.otherTopics[op] = r.other.Render("", "", event.Op(op))
	}
	return r, nil
}

// Apply returns the record of an event for this sink, with Value left for
// the encoder, and false when the sink does not want the event's table.
//
// The record's Event is e itself when no column of its table is dropped or
// masked; otherwise it is a copy with new rows and a new Relation, and e is
// left as it was, since other sinks may hold it. Topic is the rendered
// destination and Key the Key of the returned event.
func (r *Router) Apply(e *event.Event) (sink.Record, bool) {
	if e.Rel == nil {
		return r.applyNoRelation(e)
	}
	p := r.plan(e.Rel)
	if !p.keep {
		return sink.Record{}, false
	}
	out := e
	if p.cols != nil {
		c := *e
		c.Rel = p.rel
		c.Before = p.row(e.Before)
		c.After = p.row(e.After)
		out = &c
	}
	topic := ""
	if int(e.Op) < numOps {
		topic = p.topics[e.Op]
	} else {
		topic = p.t.Render(p.rel.Schema, p.rel.Table, e.Op)
	}
	return sink.Record{Event: out, Topic: topic, Key: Key(out)}, true
}

// applyNoRelation routes events that carry no Relation: transaction
// boundaries and messages, or a table event from a source that did not
// attach one (nothing to drop or mask then, but still a table to filter).
func (r *Router) applyNoRelation(e *event.Event) (sink.Record, bool) {
	if e.Schema == "" && e.Table == "" {
		topic := ""
		if int(e.Op) < numOps {
			topic = r.otherTopics[e.Op]
		} else {
			topic = r.other.Render("", "", e.Op)
		}
		return sink.Record{Event: e, Topic: topic}, true
	}
	if !r.keep(e.Schema, e.Table) {
		return sink.Record{}, false
	}
	return sink.Record{Event: e, Topic: r.template(e.Schema, e.Table).Render(e.Schema, e.Table, e.Op)}, true
}

// keep reports whether the sink wants the table.
func (r *Router) keep(schema, table string) bool {
	for _, p := range r.exclude {
		if p.Match(schema, table) {
			return false
		}
	}
	if len(r.include) == 0 {
		return true
	}
	for _, p := range r.include {
		if p.Match(schema, table) {
			return true
		}
	}
	return false
}

func (r *Router) template(schema, table string) *Template {
	if t, ok := r.tables[tableName{schema, table}]; ok {
		return t
	}
	return r.def
}

func (r *Router) plan(rel *event.Relation) *plan {
	if p, ok := r.plans.Load(rel); ok {
		return p.(*plan)
	}
	p := r.build(rel)
	// Two goroutines may build the same plan at once; both results are
	// equal, so the later Store is harmless.
	if r.nplans.Add(1) > maxPlans {
		r.plans.Clear()
		r.nplans.Store(1)
	}
	r.plans.Store(rel, p)
	return p
}

func (r *Router) build(rel *event.Relation) *plan {
	p := &plan{rel: rel, keep: r.keep(rel.Schema, rel.Table)}
	if !p.keep {
		return p
	}
	p.t = r.template(rel.Schema, rel.Table)
	for op := range numOps {
		p.topics[op] = p.t.Render(rel.Schema, rel.Table, event.Op(op))
	}
	if len(r.drop) == 0 && len(r.mask) == 0 {
		return p
	}
	changed := false
	cols := make([]int, 0, len(rel.Columns))
	masked := make([]bool, 0, len(rel.Columns))
	columns := make([]event.Column, 0, len(rel.Columns))
	for i, c := range rel.Columns {
		if matchColumn(r.drop, rel, c.Name) {
			changed = true
			continue
		}
		m := matchColumn(r.mask, rel, c.Name)
		if m {
			changed = true
			c.Type, c.TypeMod = textType, -1
		}
		cols = append(cols, i)
		masked = append(masked, m)
		columns = append(columns, c)
	}
	if changed {
		copied := *rel
		copied.Columns = columns
		p.rel, p.cols, p.masked = &copied, cols, masked
	}
	return p
}

func matchColumn(ps []ColumnPattern, rel *event.Relation, column string) bool {
	for _, p := range ps {
		if p.Match(rel.Schema, rel.Table, column) {
			return true
		}
	}
	return false
}

// row returns a new row laid out as p.rel, values masked. Only the Value
// headers are copied: unmasked Raw bytes are shared with the source row,
// which is safe because nothing writes to an event's values.
func (p *plan) row(src event.Row) event.Row {
	if src == nil {
		return nil
	}
	out := make(event.Row, len(p.cols))
	for i, j := range p.cols {
		if j >= len(src) {
			continue // not sent: Absent, the zero Value
		}
		v := src[j]
		if p.masked[i] && v.State == event.Text {
			v = event.Value{State: event.Text, Raw: maskRaw}
		}
		out[i] = v
	}
	return out
}
