package config

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/pgfeed/pgfeed/route"
)

// FuzzParse feeds Parse any bytes: it never panics, every error is an
// *Error of one line per problem, no input makes it allocate more than a
// bound far above what a real file needs (deep nesting once took the TOML
// parser gigabytes), and a config it accepts has what every pipeline
// needs. The seeds are config/example.toml and every TOML text of this
// package's tests.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("example.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte(minimal))
	f.Add([]byte(sink("type = \"file\"\npath = \"${X:-a}\"\nrotate_bytes = \"1.5GiB\"")))
	for _, kind := range nestingKinds {
		f.Add([]byte(nested(kind, 3000)))
	}
	for _, s := range tomlLiterals(f, "config_test.go", "env_test.go", "limits_test.go") {
		f.Add([]byte(s))
	}
	getenv := env("PGFEED_DSN", "x", "DSN", "postgres://localhost/db", "RETAIN", "1h", "EMPTY", "")
	const maxAlloc = 512 << 20
	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		c, err := Parse(data, getenv)
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > maxAlloc {
			t.Fatalf("Parse of %d bytes allocated %d MiB", len(data), n>>20)
		}
		if err == nil {
			if len(c.Sources) == 0 || len(c.Sinks) == 0 {
				t.Fatalf("accepted a config without sources or sinks: %+v", c)
			}
			for _, s := range c.Sinks {
				if _, err := route.New(s.RouteOptions()); err != nil {
					t.Fatalf("accepted sink %s whose routing does not compile: %v", s.Name, err)
				}
			}
			return
		}
		var cerr *Error
		if !errors.As(err, &cerr) || len(cerr.Problems) == 0 {
			t.Fatalf("error %v (%T), want an *Error with problems", err, err)
		}
		for _, p := range cerr.Problems {
			if msg := p.Error(); msg == "" || strings.Contains(msg, "\n") {
				t.Fatalf("problem %q is not one line", msg)
			}
		}
	})
}

// tomlLiterals returns the string literals of the Go files that look like
// TOML (they hold a key and a value, or a table header).
func tomlLiterals(f *testing.F, files ...string) []string {
	var out []string
	fset := token.NewFileSet()
	for _, name := range files {
		file, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			f.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err == nil && (strings.Contains(s, "=") || strings.Contains(s, "[")) {
				out = append(out, s)
			}
			return true
		})
	}
	return out
}
