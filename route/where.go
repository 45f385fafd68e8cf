package route

import (
	"errors"
	"fmt"
	"strings"
)

// NormalizeWhere checks the text of a row filter (the `where` of a table in
// a source's config) and returns the expression to put in the publication's
// WHERE (...) clause: trimmed, without a leading WHERE keyword.
//
// The source pushes the filter into PostgreSQL (PostgreSQL 15 and later
// filter rows in the publication), and PostgreSQL checks what the expression
// may use. What is checked here is that the text is one expression that
// cannot break out of the parentheses the source wraps it in: quotes,
// quoted identifiers and dollar quotes are closed, parentheses balance, and
// there is no ";" or comment outside a quote. That keeps a config value from
// turning into a second SQL statement.
func NormalizeWhere(s string) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) >= 5 && strings.EqualFold(s[:5], "where") && (len(s) == 5 || s[5] == '(' || isSpace(s[5])) {
		s = strings.TrimSpace(s[5:])
	}
	if s == "" {
		return "", errors.New("empty row filter")
	}
	depth := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			// E'...' strings take backslash escapes; the E must start a token.
			esc := i > 0 && (s[i-1] == 'E' || s[i-1] == 'e') && (i == 1 || !isIdent(s[i-2]))
			end := closeQuote(s, i, '\'', esc)
			if end < 0 {
				return "", fmt.Errorf("row filter %q: unterminated string starting at offset %d", s, i)
			}
			i = end
		case c == '"':
			end := closeQuote(s, i, '"', false)
			if end < 0 {
				return "", fmt.Errorf("row filter %q: unterminated quoted identifier starting at offset %d", s, i)
			}
			i = end
		case c == '$' && (i == 0 || !isIdent(s[i-1])):
			tag, ok := dollarTag(s[i:])
			if !ok {
				continue // a parameter such as $1, which PostgreSQL will refuse itself
			}
			end := strings.Index(s[i+len(tag):], tag)
			if end < 0 {
				return "", fmt.Errorf("row filter %q: unterminated dollar quote %s at offset %d", s, tag, i)
			}
			i += len(tag) + end + len(tag) - 1
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth < 0 {
				return "", fmt.Errorf("row filter %q: unmatched \")\" at offset %d", s, i)
			}
		case c == ';':
			return "", fmt.Errorf("row filter %q: \";\" at offset %d: a filter is one expression", s, i)
		case c == '-' && i+1 < len(s) && s[i+1] == '-', c == '/' && i+1 < len(s) && s[i+1] == '*':
			return "", fmt.Errorf("row filter %q: comment at offset %d: comments are not allowed", s, i)
		}
	}
	if depth != 0 {
		return "", fmt.Errorf("row filter %q: %d unclosed \"(\"", s, depth)
	}
	return s, nil
}

// closeQuote returns the index of the quote that closes the one at s[start],
// or -1. A doubled quote stands for itself; with esc, so does \'.
func closeQuote(s string, start int, q byte, esc bool) int {
	for i := start + 1; i < len(s); i++ {
		switch {
		case esc && s[i] == '\\':
			i++
		case s[i] == q && i+1 < len(s) && s[i+1] == q:
			i++
		case s[i] == q:
			return i
		}
	}
	return -1
}

// dollarTag returns the $tag$ that s starts with, if it starts with one.
func dollarTag(s string) (string, bool) {
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '$':
			return s[:i+1], true
		case c >= '0' && c <= '9':
			if i == 1 {
				return "", false
			}
		case !isIdent(c):
			return "", false
		}
	}
	return "", false
}

// isIdent reports whether c may appear in an unquoted identifier. Bytes of
// multi-byte UTF-8 characters count, as PostgreSQL allows them in names.
func isIdent(c byte) bool {
	return c == '_' || c == '$' || c >= 0x80 || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }
