package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// nested returns TOML text whose deepest value is depth levels down, built
// with one of the constructs that nest.
func nested(kind string, depth int) string {
	switch kind {
	case "inline tables":
		return "a = " + strings.Repeat("{b = ", depth-1) + "1" + strings.Repeat("}", depth-1) + "\n"
	case "dotted keys":
		return strings.Repeat("a.", depth-1) + "a = 1\n"
	case "table header":
		return "[" + strings.Repeat("a.", depth-1) + "a]\n"
	case "arrays":
		return "a = " + strings.Repeat("[", depth-1) + "1" + strings.Repeat("]", depth-1) + "\n"
	case "header, dotted key, inline table, array":
		q := depth / 4
		return "[" + strings.Repeat("h.", q-1) + "h]\n" +
			strings.Repeat("k.", q-1) + "k = " + strings.Repeat("{t = ", q) + strings.Repeat("[", depth-3*q) + "1" +
			strings.Repeat("]", depth-3*q) + strings.Repeat("}", q) + "\n"
	}
	panic(kind)
}

var nestingKinds = []string{"inline tables", "dotted keys", "table header", "arrays", "header, dotted key, inline table, array"}

// Deep nesting took the TOML parser gigabytes and minutes (it is quadratic
// in the depth of inline tables and dotted keys): it is refused before
// parsing with one line that says where.
func TestDeepNestingRefused(t *testing.T) {
	for _, kind := range nestingKinds {
		t.Run(kind, func(t *testing.T) {
			for _, depth := range []int{MaxDepth + 1, 5000, 100000} {
				text := "checkpoint = \"x.db\"\n" + nested(kind, depth)
				_, err := Parse([]byte(text), nil)
				var cerr *Error
				if !errors.As(err, &cerr) || len(cerr.Problems) != 1 {
					t.Fatalf("depth %d: %v, want one problem", depth, err)
				}
				p := cerr.Problems[0]
				// Just past the limit, the deepest value (on the last line) is
				// the first too deep; far past it, a header may already be.
				want := strings.Count(text, "\n")
				if depth > MaxDepth+1 && p.Line == 2 {
					want = 2
				}
				if p.Line != want || !strings.Contains(p.Message, "nested more than 32 levels deep") {
					t.Errorf("depth %d: %+v, want line %d and the depth", depth, p, want)
				}
			}
		})
	}
}

// At MaxDepth the scan lets the text through to the parser (which then
// reports the unknown keys): the limit is where it says.
func TestNestingAtTheLimitParsed(t *testing.T) {
	for _, kind := range nestingKinds {
		text := nested(kind, MaxDepth)
		if line, ok := withinDepth([]byte(text), MaxDepth); !ok {
			t.Errorf("%s at depth %d refused (line %d)", kind, MaxDepth, line)
		}
		_, err := Parse([]byte(text), nil)
		if err == nil || strings.Contains(err.Error(), "nested more than") {
			t.Errorf("%s at depth %d: %v, want the parser's unknown-key error", kind, MaxDepth, err)
		}
	}
}

// Brackets, braces and dots inside strings and comments, floats, dates and
// inline tables the way real files write them do not count.
func TestNestingIgnoresStringsAndComments(t *testing.T) {
	deep := strings.Repeat("[{a.", 100)
	for _, text := range []string{
		`a = "` + deep + `"`,
		`a = '` + deep + `'`,
		"a = \"\"\"\n" + deep + "\n\"\"\"\nb = 1",
		"a = '''\n" + deep + "'''''\nb = 1",
		`a = "\"` + deep + `"`,
		"# " + deep + "\na = 1",
		`"` + deep + `" = 1`,
		"a = [\n  1.5, # " + deep + "\n  2.25,\n]\nb = 1979-05-27T07:32:00Z",
		strings.Repeat("x = [{a = 1}, {}, {b = [1, {c = 2,}]}]\n", 1000),
		strings.Repeat("[[sinks.out.route]]\nk.l.m = {n = 1}\n", 1000),
	} {
		if line, ok := withinDepth([]byte(text), 8); !ok {
			t.Errorf("refused at line %d:\n%.200s", line, text)
		}
	}
	example, err := os.ReadFile("example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if line, ok := withinDepth(example, 6); !ok {
		t.Errorf("example.toml nests deeper than 6 at line %d", line)
	}
}

func TestFileTooLarge(t *testing.T) {
	// Valid TOML, a comment of MaxFileSize bytes: the size alone refuses it.
	big := []byte("# " + strings.Repeat("x", MaxFileSize) + "\n")
	_, err := Parse(big, nil)
	if err == nil || !strings.Contains(err.Error(), "larger than 1024 KiB") {
		t.Errorf("Parse: %v, want the size error", err)
	}
	path := filepath.Join(t.TempDir(), "pgfeed.toml")
	if err := os.WriteFile(path, big, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	if err == nil || err.Error() != path+": the file is larger than 1024 KiB: a pgfeed configuration is far smaller; is this the right file?" {
		t.Errorf("Load: %v, want one line naming the file and its size", err)
	}
	if !errors.As(err, new(*Error)) {
		t.Errorf("Load: %T, want a *config.Error", err)
	}
}

// Load of a device that never ends stops at the limit.
func TestLoadEndlessFile(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero")
	}
	_, err := Load("/dev/zero")
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load(/dev/zero): %v", err)
	}
}
