package snapshot

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/pgfeed/pgfeed/event"
)

// decodeCopyLine splits one line of COPY's text format (without its
// newline) into row, which it resizes to ncols values. Fields without a
// backslash are referenced in place, with no copy; fields with escapes are
// decoded into scratch, which it grows first to len(line) so that no value
// already decoded moves. Both row and the returned scratch are for reuse by
// the next call, and every value is valid only until then.
//
// Escapes are those COPY writes and reads: \b \f \n \r \t \v, \\, \ooo
// (one to three octal digits), \xh or \xhh (one or two hex digits), and
// any other character after a backslash standing for itself. A field that
// is exactly \N is NULL.
func decodeCopyLine(row event.Row, scratch, line []byte, ncols int) (event.Row, []byte, error) {
	if cap(row) < ncols {
		row = make(event.Row, ncols)
	}
	row = row[:ncols]
	if cap(scratch) < len(line) {
		scratch = make([]byte, 0, len(line)+len(line)/4)
	}
	scratch = scratch[:0]
	if ncols == 0 {
		// COPY writes an empty line for each row of a table without columns.
		if len(line) != 0 {
			return row, scratch, fmt.Errorf("decoding COPY row: data in a row of no columns")
		}
		return row, scratch, nil
	}
	col := 0
	for {
		end := bytes.IndexByte(line, '\t')
		field := line
		if end >= 0 {
			field = line[:end]
		}
		if col >= ncols {
			return row, scratch, fmt.Errorf("decoding COPY row: more than %d columns", ncols)
		}
		switch {
		case len(field) == 2 && field[0] == '\\' && field[1] == 'N':
			row[col] = event.Value{State: event.Null}
		case bytes.IndexByte(field, '\\') < 0:
			row[col] = event.Value{State: event.Text, Raw: field}
		default:
			start := len(scratch)
			var err error
			if scratch, err = unescapeCopy(scratch, field); err != nil {
				return row, scratch, fmt.Errorf("decoding COPY row, column %d: %w", col+1, err)
			}
			row[col] = event.Value{State: event.Text, Raw: scratch[start:len(scratch):len(scratch)]}
		}
		col++
		if end < 0 {
			break
		}
		line = line[end+1:]
	}
	if col != ncols {
		return row, scratch, fmt.Errorf("decoding COPY row: %d columns, want %d", col, ncols)
	}
	return row, scratch, nil
}

var errLoneBackslash = errors.New("field ends in a lone backslash")

// unescapeCopy appends the decoded field to dst. The decoded form is never
// longer than the field, so dst, grown by the caller, does not move.
func unescapeCopy(dst, field []byte) ([]byte, error) {
	for i := 0; i < len(field); i++ {
		c := field[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++
		if i == len(field) {
			return dst, errLoneBackslash
		}
		c = field[i]
		switch c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'v':
			dst = append(dst, '\v')
		case '0', '1', '2', '3', '4', '5', '6', '7':
			v := c - '0'
			for n := 1; n < 3 && i+1 < len(field) && isOctal(field[i+1]); n++ {
				i++
				v = v<<3 | (field[i] - '0')
			}
			dst = append(dst, v)
		case 'x':
			if i+1 < len(field) && isHex(field[i+1]) {
				i++
				v := unhex(field[i])
				if i+1 < len(field) && isHex(field[i+1]) {
					i++
					v = v<<4 | unhex(field[i])
				}
				dst = append(dst, v)
			} else {
				dst = append(dst, 'x')
			}
		default:
			dst = append(dst, c)
		}
	}
	return dst, nil
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// copyRowWriter is the io.Writer that pgconn's CopyTo writes COPY data to.
// It cuts the data into lines, decodes each into a reused row and hands it
// to fn, so a table of any size passes through a buffer of one row.
// PostgreSQL sends one row per CopyData message, which takes the fast path;
// a line split across messages is joined in partial.
type copyRowWriter struct {
	ncols   int
	fn      func(event.Row) error
	row     event.Row
	scratch []byte
	partial []byte
	rows    int64
	bytes   int64
}

func (w *copyRowWriter) Write(p []byte) (int, error) {
	n := len(p)
	w.bytes += int64(n)
	for len(p) > 0 {
		nl := bytes.IndexByte(p, '\n')
		if nl < 0 {
			w.partial = append(w.partial, p...)
			return n, nil
		}
		line := p[:nl]
		if len(w.partial) > 0 {
			w.partial = append(w.partial, line...)
			line = w.partial
		}
		if err := w.line(line); err != nil {
			return 0, err
		}
		w.partial = w.partial[:0]
		p = p[nl+1:]
	}
	return n, nil
}

func (w *copyRowWriter) line(line []byte) error {
	var err error
	w.row, w.scratch, err = decodeCopyLine(w.row, w.scratch, line, w.ncols)
	if err != nil {
		return err
	}
	w.rows++
	return w.fn(w.row)
}

// finish reports data left after the last newline, which a complete COPY
// never has.
func (w *copyRowWriter) finish() error {
	if len(w.partial) > 0 {
		return fmt.Errorf("decoding COPY data: %d bytes after the last complete row", len(w.partial))
	}
	return nil
}
