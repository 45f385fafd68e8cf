package config

import (
	"fmt"
	"strings"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Field is the setting at fault, as a path through the file:
	// "sinks.archive.sources[0]", `sinks.out.route.tables."public.users"`.
	// It is empty for a syntax error.
	Field string
	// Line is the line of a syntax error; 0 for other problems, whose Field
	// says where they are.
	Line    int
	Message string
	// Err is the error behind the problem, when there is one (a
	// toml.ParseError, a size that does not parse, ...).
	Err error
}

// Error returns "field: message", or "line N: message" for a syntax error.
func (p Problem) Error() string {
	switch {
	case p.Field != "":
		return p.Field + ": " + p.Message
	case p.Line > 0:
		return fmt.Sprintf("line %d: %s", p.Line, p.Message)
	}
	return p.Message
}

// Unwrap returns the error behind the problem, if any.
func (p Problem) Unwrap() error { return p.Err }

// Error is what Parse and Load return for an invalid configuration: every
// problem found: the settings of each table in turn, in file order, then
// the checks across tables (references, duplicates).
type Error struct {
	// File is the configuration file, when it was read by Load; it prefixes
	// each line of the message so that each line stands on its own.
	File     string
	Problems []Problem
}

// Error returns one line per problem.
func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		switch {
		case e.File == "":
			b.WriteString(p.Error())
		case p.Field == "" && p.Line > 0:
			fmt.Fprintf(&b, "%s:%d: %s", e.File, p.Line, p.Message)
		default:
			b.WriteString(e.File + ": " + p.Error())
		}
	}
	return b.String()
}

// Unwrap returns the problems, so errors.As finds, for example, the
// toml.ParseError of a syntax error.
func (e *Error) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}
