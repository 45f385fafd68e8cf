package config

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// reader turns the parsed TOML tree into typed values, checking the type of
// each value, expanding environment variables in strings and collecting
// every problem instead of stopping at the first.
//
// The TOML library decodes the text into a generic tree (so syntax errors
// keep their line numbers), but the typing is ours and not toml's struct
// decoding: that matches keys case-insensitively ("DSN" would pass for
// "dsn"), stops at the first type error, and would run before ${VAR}
// expansion, so "${RETAIN:-1h}" could not be a duration.
type reader struct {
	getenv   func(string) (string, bool)
	problems []Problem
	order    map[string]int // each key's position in the file, for reporting in file order
	// noSources are the sinks without a sources key, in file order.
	noSources []string
}

func (r *reader) add(field, format string, args ...any) {
	r.problems = append(r.problems, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (r *reader) addErr(field string, err error) {
	r.problems = append(r.problems, Problem{Field: field, Message: err.Error(), Err: err})
}

// table is one TOML table being read. Its accessors record which keys the
// reader asked for, whether present or not, so that done can report the
// others as unknown and suggest the key that was meant.
type table struct {
	r     *reader
	key   toml.Key // the table's key; nil at the top
	name  string   // the last part of key: a source's or sink's name
	m     map[string]any
	known []string
}

// path returns the printed path of the table's key k.
func (t *table) path(k string) string {
	return append(slices.Clone(t.key), k).String()
}

func (t *table) get(k string) (any, bool) {
	if !slices.Contains(t.known, k) {
		t.known = append(t.known, k)
	}
	v, ok := t.m[k]
	return v, ok
}

func (t *table) has(k string) bool {
	_, ok := t.m[k]
	return ok
}

func (t *table) wrongType(k, want string, v any) {
	t.r.add(t.path(k), "expected %s, got %s", want, tomlType(v))
}

// str returns a string setting, expanded; "" when absent or invalid.
func (t *table) str(k string) string {
	s, _ := t.strOK(k)
	return s
}

// strOK is str that also reports whether the value was a string that
// expanded without error.
func (t *table) strOK(k string) (string, bool) {
	v, ok := t.get(k)
	if !ok {
		return "", false
	}
	s, ok := v.(string)
	if !ok {
		t.wrongType(k, "a string", v)
		return "", false
	}
	return t.expandOK(t.path(k), s)
}

// mustStr is str for a required setting, which must not be empty either.
func (t *table) mustStr(k string) string {
	s, ok := t.strOK(k)
	switch {
	case !t.has(k):
		t.r.add(t.path(k), "missing")
	case ok && s == "":
		t.r.add(t.path(k), "empty")
	}
	return s
}

func (t *table) expand(field, s string) string {
	out, _ := t.expandOK(field, s)
	return out
}

func (t *table) expandOK(field, s string) (string, bool) {
	out, err := expand(s, t.r.getenv)
	if err != nil {
		t.r.addErr(field, err)
		return "", false
	}
	return out, true
}

func (t *table) boolean(k string) bool {
	v, ok := t.get(k)
	if !ok {
		return false
	}
	b, ok := v.(bool)
	if !ok {
		t.wrongType(k, "a boolean", v)
	}
	return b
}

func (t *table) integer(k string) int64 {
	v, ok := t.get(k)
	if !ok {
		return 0
	}
	n, ok := v.(int64)
	if !ok {
		t.wrongType(k, "an integer", v)
	}
	return n
}

// each reads an array of strings, expanding each element and passing it
// to check (when not nil) with its path. Elements that are not strings, or
// do not expand, are reported and left "", so that the index of each
// element stays the one of the file.
func (t *table) each(k string, check func(field, s string)) []string {
	v, ok := t.get(k)
	if !ok {
		return nil
	}
	a, ok := v.([]any)
	if !ok {
		t.wrongType(k, "an array of strings", v)
		return nil
	}
	out := make([]string, len(a))
	for i, e := range a {
		field := fmt.Sprintf("%s[%d]", t.path(k), i)
		s, ok := e.(string)
		if !ok {
			t.r.add(field, "expected a string, got %s", tomlType(e))
			continue
		}
		if out[i], ok = t.expandOK(field, s); ok && check != nil {
			check(field, out[i])
		}
	}
	return out
}

// mustEach is each for a required array, which must not be empty either.
func (t *table) mustEach(k string, check func(field, s string)) []string {
	out := t.each(k, check)
	if !t.has(k) {
		t.r.add(t.path(k), "missing")
	} else if a, ok := t.m[k].([]any); ok && len(a) == 0 {
		t.r.add(t.path(k), "empty")
	}
	return out
}

// strDefault is str with a default for when the key is absent; present, it
// must not be empty.
func (t *table) strDefault(k, def string) string {
	if !t.has(k) {
		t.get(k)
		return def
	}
	return t.mustStr(k)
}

// strMap returns a table of strings, each value expanded.
func (t *table) strMap(k string) map[string]string {
	v, ok := t.get(k)
	if !ok {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.wrongType(k, "a table of strings", v)
		return nil
	}
	out := make(map[string]string, len(m))
	for _, name := range t.r.sorted(append(slices.Clone(t.key), k), m) {
		field := append(slices.Clone(t.key), k, name).String()
		s, ok := m[name].(string)
		if !ok {
			t.r.add(field, "expected a string, got %s", tomlType(m[name]))
			continue
		}
		out[name] = t.expand(field, s)
	}
	return out
}

// sub returns a sub-table; when it is absent, an empty table whose
// accessors find nothing, so callers read it the same way.
func (t *table) sub(k string) *table {
	key := append(slices.Clone(t.key), k)
	v, ok := t.get(k)
	if !ok {
		return &table{r: t.r, key: key, name: k}
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.wrongType(k, "a table", v)
		return &table{r: t.r, key: key, name: k}
	}
	return &table{r: t.r, key: key, name: k, m: m}
}

// subs returns the sub-tables of a table of tables ([sources.main],
// [sources.other]), in file order.
func (t *table) subs(k string) []*table {
	parent := t.sub(k)
	var out []*table
	for _, name := range t.r.sorted(parent.key, parent.m) {
		out = append(out, parent.sub(name))
	}
	return out
}

func (t *table) size(k string) int64 {
	v, ok := t.get(k)
	if !ok {
		return 0
	}
	switch v := v.(type) {
	case int64:
		if v < 0 {
			t.r.add(t.path(k), "invalid size %d: must not be negative", v)
			return 0
		}
		return v
	case string:
		s, ok := t.expandOK(t.path(k), v)
		if !ok {
			return 0
		}
		n, err := ParseSize(s)
		if err != nil {
			t.r.addErr(t.path(k), err)
		}
		return n
	}
	t.wrongType(k, `a size such as "64MB" or a number of bytes`, v)
	return 0
}

func (t *table) duration(k string) time.Duration {
	v, ok := t.get(k)
	if !ok {
		return 0
	}
	s, ok := v.(string)
	if !ok {
		t.wrongType(k, `a duration such as "30s"`, v)
		return 0
	}
	s, ok = t.expandOK(t.path(k), s)
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.r.addErr(t.path(k), fmt.Errorf("invalid duration %q (want e.g. \"30s\", \"5m\", \"1h30m\"): %w", s, err))
		return 0
	}
	if d < 0 {
		t.r.add(t.path(k), "invalid duration %q: must not be negative", s)
		return 0
	}
	return d
}

func (t *table) retain(k string) Retain {
	v, ok := t.get(k)
	if !ok {
		return Retain{}
	}
	switch v := v.(type) {
	case int64:
		if v < 0 {
			t.r.add(t.path(k), "invalid retain %d: must not be negative", v)
			return Retain{}
		}
		return Retain{Bytes: v}
	case string:
		s, ok := t.expandOK(t.path(k), v)
		if !ok {
			return Retain{}
		}
		ret, err := parseRetain(s)
		if err != nil {
			t.r.addErr(t.path(k), err)
		}
		return ret
	}
	t.wrongType(k, `a duration such as "1h" or a size such as "512MB"`, v)
	return Retain{}
}

// skipRest marks every key of the table as known, so that done reports no
// unknown keys: used when the table's type is unknown, and so are the keys
// that type would take.
func (t *table) skipRest() {
	for k := range t.m {
		t.get(k)
	}
}

// done reports the keys of the table that no accessor asked for, in file
// order, each with the key it most likely meant.
func (t *table) done() {
	for _, k := range t.r.sorted(t.key, t.m) {
		if slices.Contains(t.known, k) {
			continue
		}
		if s := suggest(k, t.known); s != "" {
			t.r.add(t.path(k), "unknown key (did you mean %s?)", s)
		} else {
			known := slices.Sorted(slices.Values(t.known))
			t.r.add(t.path(k), "unknown key (known here: %s)", strings.Join(known, ", "))
		}
	}
}

// sorted returns the keys of the table m at key in the order of the file.
func (r *reader) sorted(key toml.Key, m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	pos := func(k string) int {
		if p, ok := r.order[append(slices.Clone(key), k).String()]; ok {
			return p
		}
		return len(r.order) // keys toml did not list: after the others
	}
	slices.SortFunc(keys, func(a, b string) int {
		if pa, pb := pos(a), pos(b); pa != pb {
			return pa - pb
		}
		return strings.Compare(a, b)
	})
	return keys
}

// tomlType names the TOML type of a decoded value, as TOML's spec does.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case time.Time:
		return "datetime"
	case []map[string]any:
		return "array of tables"
	case []any:
		return "array"
	case map[string]any:
		return "table"
	}
	return fmt.Sprintf("%T", v)
}

// suggest returns the candidate closest to s, if it is close enough to be
// a typo of it.
func suggest(s string, candidates []string) string {
	for _, c := range candidates {
		if strings.EqualFold(s, c) {
			return c
		}
	}
	best, bestDist := "", len(s)/3+1
	if bestDist > 3 {
		bestDist = 3
	}
	for _, c := range candidates {
		if d := editDistance(s, c); d <= bestDist && (best == "" || d < editDistance(s, best)) {
			best = c
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
