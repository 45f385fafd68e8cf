package config

import (
	"fmt"
	"strings"
)

// expand replaces ${NAME} with the variable's value and ${NAME:-default}
// with the value, or with default when the variable is unset or empty (as a
// shell does). "$${" stands for a literal "${"; any other "$" is itself, so
// a password such as "pa$word" needs no escaping.
//
// Expansion runs once, on the values of the parsed file: a variable's value
// is never expanded again, so a secret that happens to contain "${" is
// delivered as it is, and nothing in a value can change the file's syntax.
func expand(s string, getenv func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		if i > 0 && s[i-1] == '$' {
			b.WriteString(s[:i]) // "$$" + "{" : drop one "$"
			b.WriteString("{")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("unclosed \"${\" at %q", s[i:])
		}
		ref := s[i+2 : i+end]
		s = s[i+end+1:]
		name, def, hasDef := strings.Cut(ref, ":-")
		if !validVarName(name) {
			return "", fmt.Errorf("invalid environment variable name %q in \"${%s}\"", name, ref)
		}
		if strings.Contains(def, "${") {
			return "", fmt.Errorf("\"${%s}\": a default cannot refer to another variable", ref)
		}
		v, ok := getenv(name)
		switch {
		case hasDef && v == "":
			v = def
		case !ok:
			return "", fmt.Errorf("environment variable %s is not set (set it, or give a default: ${%s:-value})", name, name)
		}
		b.WriteString(v)
	}
}

func validVarName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '_' && !(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && !(c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
