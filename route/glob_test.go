package route

import (
	"path"
	"testing"
)

func TestGlobMatch(t *testing.T) {
	cases := []struct {
		pattern, name string
		want          bool
	}{
		{"*", "a/b", true}, // path.Match would say false: names may hold "/"
		{"*", "", true},
		{"a*", "a b/c", true},
		{"*_log", `"weird"_log`, true},
		{"Orders", "orders", false},
		{"Ord?rs", "Orders", true},
		{"?", "é", true},
		{"[a-c]x", "bx", true},
		{"[^a-c]x", "bx", false},
		{"[!a-c]x", "dx", true},
		{"[]a]", "]", true},
		{`\*`, "*", true},
		{`\*`, "x", false},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"*a", "bbba", true},
		{"**", "x", true},
		{"a/b", "a/b", true},
		{"with space", "with space", true},
	}
	for _, c := range cases {
		if err := checkGlob(c.pattern); err != nil {
			t.Fatalf("checkGlob(%q): %v", c.pattern, err)
		}
		if got := globMatch(c.pattern, c.name); got != c.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
	for _, bad := range []string{"[", "[a", `a\`, `[\`} {
		if checkGlob(bad) == nil {
			t.Errorf("checkGlob(%q) accepted a bad pattern", bad)
		}
	}
}

// FuzzGlob checks that the matcher agrees with path.Match on names without
// "/" (where the two are meant to be the same) and never panics.
func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{{"*", "abc"}, {"a[b-d]*", "ace"}, {`\[x`, "[x"}, {"[^]]", "a"}, {"?*?", "ab"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		if checkGlob(pattern) != nil {
			return
		}
		got := globMatch(pattern, name)
		for _, s := range []string{pattern, name} {
			for _, r := range s {
				if r == '/' || r == '!' || r == 0xFFFD {
					return // "/" is special to path.Match, "[!" is ours only
				}
			}
		}
		want, err := path.Match(pattern, name)
		if err == nil && got != want {
			t.Fatalf("globMatch(%q, %q) = %v, path.Match = %v", pattern, name, got, want)
		}
	})
}
