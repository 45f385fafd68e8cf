package route

import (
	"errors"
	"unicode/utf8"
)

// Table and column names may hold any character, "/" included, so the
// patterns are not path.Match patterns (whose "*" stops at "/"): "*"
// matches any run of characters, "?" any one, "[...]" a class ("[^...]" or
// "[!...]" negated, with ranges "a-z"), and "\" makes the next character
// literal. Each part of a dotted name is matched on its own, so no
// wildcard spans the dot between schema and table.

var errBadPattern = errors.New("syntax error in pattern")

// checkGlob reports whether pattern is well formed.
func checkGlob(pattern string) error {
	for p := 0; p < len(pattern); {
		switch pattern[p] {
		case '\\':
			if p+1 >= len(pattern) {
				return errBadPattern
			}
			_, w := utf8.DecodeRuneInString(pattern[p+1:])
			p += 1 + w
		case '[':
			end, err := classEnd(pattern, p)
			if err != nil {
				return err
			}
			p = end
		default:
			p++
		}
	}
	return nil
}

// globMatch reports whether name matches the whole of a pattern that
// checkGlob accepted.
func globMatch(pattern, name string) bool {
	p, n := 0, 0
	starP, starN := -1, 0 // the last "*" seen, and where in name it started
	for n < len(name) {
		if p < len(pattern) {
			r, w := utf8.DecodeRuneInString(name[n:])
			switch pattern[p] {
			case '*':
				starP, starN = p, n
				p++
				continue
			case '?':
				p, n = p+1, n+w
				continue
			case '[':
				if ok, end := matchClass(pattern, p, r); ok {
					p, n = end, n+w
					continue
				}
			default:
				if pr, pw := globLiteral(pattern, p); pr == r {
					p, n = p+pw, n+w
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		// Backtrack: the last star swallows one more character.
		_, w := utf8.DecodeRuneInString(name[starN:])
		starN += w
		p, n = starP+1, starN
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// globLiteral returns the character at pattern[p], unescaping "\x".
func globLiteral(pattern string, p int) (rune, int) {
	if pattern[p] == '\\' {
		r, w := utf8.DecodeRuneInString(pattern[p+1:])
		return r, w + 1
	}
	return utf8.DecodeRuneInString(pattern[p:])
}

// classEnd returns the index after the class that starts at pattern[p].
// A "]" right after "[" (or "[^") is a member, not the end.
func classEnd(pattern string, p int) (int, error) {
	i := p + 1
	if i < len(pattern) && (pattern[i] == '^' || pattern[i] == '!') {
		i++
	}
	for first := true; ; first = false {
		if i >= len(pattern) {
			return 0, errBadPattern
		}
		if pattern[i] == ']' && !first {
			return i + 1, nil
		}
		if pattern[i] == '\\' {
			if i+1 >= len(pattern) {
				return 0, errBadPattern
			}
			i++
		}
		_, w := utf8.DecodeRuneInString(pattern[i:])
		i += w
	}
}

// matchClass matches r against the well-formed class at pattern[p] and
// returns where the class ends.
func matchClass(pattern string, p int, r rune) (bool, int) {
	end, _ := classEnd(pattern, p)
	i := p + 1
	negate := pattern[i] == '^' || pattern[i] == '!'
	if negate {
		i++
	}
	in := false
	for first := true; i < end-1; first = false {
		if pattern[i] == ']' && !first {
			break
		}
		lo, w := globLiteral(pattern, i)
		i += w
		hi := lo
		if i+1 < end-1 && pattern[i] == '-' {
			hi, w = globLiteral(pattern, i+1)
			i += 1 + w
		}
		if lo <= r && r <= hi {
			in = true
		}
	}
	return in != negate, end
}
