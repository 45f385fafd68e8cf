package config

import (
	"fmt"
	"io"
	"os"
)

// Limits on a configuration file, checked before the TOML parser sees it.
// The parser's cost grows with the square of the nesting of inline tables
// and dotted keys (a few hundred kilobytes of "{a={a={..." take gigabytes
// and minutes), while the deepest setting of a pgfeed file is five levels
// down (sinks.NAME.route.tables."schema.table"...) and a large file, with
// hundreds of sources and sinks, is tens of kilobytes.
const (
	// MaxFileSize is the largest configuration Load reads and Parse
	// accepts.
	MaxFileSize = 1 << 20
	// MaxDepth is the deepest a value may be nested, counting each part of
	// a table header or dotted key and each array or inline table.
	MaxDepth = 32
)

// readLimited reads the file at path, failing once it is larger than
// MaxFileSize without reading the rest (the path may even be a device that
// never ends).
func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, &Error{File: path, Problems: []Problem{tooLarge()}}
	}
	return data, nil
}

func tooLarge() Problem {
	return Problem{Message: fmt.Sprintf("the file is larger than %d KiB: a pgfeed configuration is far smaller; is this the right file?", MaxFileSize>>10)}
}

// checkLimits returns the problem of a text that is too large or nests
// deeper than MaxDepth, before it is parsed.
func checkLimits(data []byte) *Problem {
	if len(data) > MaxFileSize {
		p := tooLarge()
		return &p
	}
	if line, ok := withinDepth(data, MaxDepth); !ok {
		return &Problem{Line: line, Message: fmt.Sprintf("nested more than %d levels deep (tables, dotted keys, arrays, inline tables): no pgfeed setting is; flatten it", MaxDepth)}
	}
	return nil
}

// withinDepth reports whether no value of the TOML text data is nested
// deeper than max, and if not, the line where it first is. It is a lexical
// scan, not a parser: it knows strings, comments, keys and brackets, and
// over-counts rather than under-counts on text that is not valid TOML
// (which the parser then rejects anyway). It runs in one pass and constant
// memory besides a stack bounded by max.
func withinDepth(data []byte, max int) (line int, ok bool) {
	type frame struct {
		table bool // an inline table, where keys follow '{' and ','
		depth int  // of the values in it, before its keys' parts
	}
	var (
		frames []frame
		header int  // parts of the last [table] header: the depth of its keys
		keyPos bool = true
		inPart bool // inside a bare key part
		parts  int  // parts of the key being read
		cur    int  // depth of the value being read
	)
	line = 1
	base := func() int {
		if len(frames) == 0 {
			return header
		}
		return frames[len(frames)-1].depth
	}
	push := func(table bool) bool {
		// An array is a level; an inline table is not by itself, its keys
		// are (as those of a [table] are).
		d := cur + 1
		if table {
			d = cur
		}
		if d > max {
			return false
		}
		frames = append(frames, frame{table: table, depth: d})
		cur = d
		return true
	}
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case c == '\n':
			line++
			inPart = false
			if len(frames) == 0 {
				keyPos, parts = true, 0
			}
		case c == '#':
			for i+1 < len(data) && data[i+1] != '\n' {
				i++
			}
		case c == '"' || c == '\'':
			if keyPos && !inPart {
				parts++
				if base()+parts > max {
					return line, false
				}
			}
			inPart = keyPos
			i, line = skipString(data, i, line)
		case c == '}':
			// Also in key position: an empty inline table, or one with a
			// trailing comma.
			if len(frames) > 0 {
				frames = frames[:len(frames)-1]
			}
			cur, keyPos, inPart = base(), false, false
		case keyPos && c == '[' && len(frames) == 0 && parts == 0:
			// A table header, [a.b] or [[a.b]]: its parts are the depth of
			// the keys below it.
			header = 0
			if i+1 < len(data) && data[i+1] == '[' {
				i++
			}
			frames = append(frames, frame{depth: 0}) // so that its parts count from 0
			parts = 0
		case keyPos && c == ']' && len(frames) == 1 && frames[0].depth == 0 && !frames[0].table:
			header, frames = parts, frames[:0]
			if header > max {
				return line, false
			}
			keyPos, inPart = false, false
		case keyPos && c == '.':
			inPart = false
		case keyPos && c == '=':
			cur = base() + parts
			if cur > max {
				return line, false
			}
			keyPos, inPart = false, false
		case keyPos && (c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'):
			if !inPart {
				inPart = true
				parts++
				if base()+parts > max {
					return line, false
				}
			}
		case keyPos:
			inPart = false
		case c == '[' || c == '{':
			if !push(c == '{') {
				return line, false
			}
			if c == '{' {
				keyPos, parts = true, 0
			}
		case c == ']':
			if len(frames) > 0 {
				frames = frames[:len(frames)-1]
			}
			cur = base()
		case c == ',' && len(frames) > 0:
			cur = base()
			if frames[len(frames)-1].table {
				keyPos, parts = true, 0
			}
		}
	}
	return line, true
}

// skipString returns the index of the last byte of the string that starts
// at data[i] (a basic or literal string, single- or multi-line) and the
// line it ends on.
func skipString(data []byte, i, line int) (int, int) {
	q := data[i]
	triple := i+2 < len(data) && data[i+1] == q && data[i+2] == q
	if triple {
		i += 2
	}
	for i++; i < len(data); i++ {
		switch c := data[i]; {
		case c == '\\' && q == '"':
			i++
			if i < len(data) && data[i] == '\n' {
				line++
			}
		case c == '\n':
			line++
			if !triple {
				return i - 1, line - 1 // an unterminated string ends with its line
			}
		case c == q && !triple:
			return i, line
		case c == q && i+2 < len(data) && data[i+1] == q && data[i+2] == q:
			// Up to two more quotes may belong to the string: """a""""".
			i += 2
			for i+1 < len(data) && data[i+1] == q {
				i++
			}
			return i, line
		}
	}
	return len(data) - 1, line
}
