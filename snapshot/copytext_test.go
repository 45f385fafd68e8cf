package snapshot

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pgfeed/pgfeed/event"
)

// appendCopyText writes a row in COPY text format the way PostgreSQL's
// CopyAttributeOutText does, for the round-trip property.
func appendCopyText(dst []byte, row event.Row) []byte {
	for i, v := range row {
		if i > 0 {
			dst = append(dst, '\t')
		}
		if v.State != event.Text {
			dst = append(dst, `\N`...)
			continue
		}
		for _, c := range v.Raw {
			switch c {
			case '\\':
				dst = append(dst, `\\`...)
			case '\b':
				dst = append(dst, `\b`...)
			case '\f':
				dst = append(dst, `\f`...)
			case '\n':
				dst = append(dst, `\n`...)
			case '\r':
				dst = append(dst, `\r`...)
			case '\t':
				dst = append(dst, `\t`...)
			case '\v':
				dst = append(dst, `\v`...)
			default:
				dst = append(dst, c)
			}
		}
	}
	return dst
}

func TestDecodeCopyLine(t *testing.T) {
	tests := []struct {
		line  string
		ncols int
		want  []string // "<NULL>" for NULL
		err   string
	}{
		{"1\tabc\t\\N", 3, []string{"1", "abc", "<NULL>"}, ""},
		{"\t\t", 3, []string{"", "", ""}, ""},
		{`a\\b\tc\nd\re\bf\fg\vh`, 1, []string{"a\\b\tc\nd\re\bf\fg\vh"}, ""},
		{`\\N`, 1, []string{`\N`}, ""},
		{`\N\N`, 1, []string{"NN"}, ""}, // only a whole field \N is NULL
		{`\101\0\7x\1011`, 1, []string{"A\x00\x07xA1"}, ""},
		{`\x41\x4g\xZ\x`, 1, []string{"A\x04gxZx"}, ""},
		{`\q\.`, 1, []string{"q."}, ""},
		{"\\xe2\\x82\\xac", 1, []string{"€"}, ""},
		{"", 1, []string{""}, ""},
		{"", 0, nil, ""},
		{"1\t2", 1, nil, "more than 1 columns"},
		{"1", 2, nil, "1 columns, want 2"},
		{`ab\`, 1, nil, "lone backslash"},
		{"x", 0, nil, "no columns"},
	}
	for _, tt := range tests {
		row, _, err := decodeCopyLine(nil, nil, []byte(tt.line), tt.ncols)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: error %v, want %q", tt.line, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.line, err)
			continue
		}
		var got []string
		for _, v := range row {
			if v.State == event.Null {
				got = append(got, "<NULL>")
			} else {
				got = append(got, string(v.Raw))
			}
		}
		if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
			t.Errorf("%q: got %q, want %q", tt.line, got, tt.want)
		}
	}
}

// Lines split anywhere across writes decode as if written whole.
func TestCopyRowWriterSplits(t *testing.T) {
	data := []byte("1\ta\\tb\n2\t\\N\n3\tlast\n")
	want := "1|a\tb;2|<NULL>;3|last;"
	for size := 1; size <= len(data); size++ {
		var got strings.Builder
		w := &copyRowWriter{ncols: 2, fn: func(r event.Row) error {
			for i, v := range r {
				if i > 0 {
					got.WriteByte('|')
				}
				if v.State == event.Null {
					got.WriteString("<NULL>")
				} else {
					got.Write(v.Raw)
				}
			}
			got.WriteByte(';')
			return nil
		}}
		for p := data; len(p) > 0; {
			n := min(size, len(p))
			if _, err := w.Write(p[:n]); err != nil {
				t.Fatal(err)
			}
			p = p[n:]
		}
		if err := w.finish(); err != nil {
			t.Fatal(err)
		}
		if got.String() != want || w.rows != 3 {
			t.Fatalf("chunks of %d: got %q (%d rows), want %q", size, got.String(), w.rows, want)
		}
	}
	w := &copyRowWriter{ncols: 1, fn: func(event.Row) error { return nil }}
	w.Write([]byte("1\n2"))
	if w.finish() == nil {
		t.Error("a truncated last row is not reported")
	}
}

// The decoder takes bytes from the network: it must not panic on any input,
// and whatever it accepts must survive encoding and decoding again.
func FuzzDecodeCopyLine(f *testing.F) {
	for _, s := range []string{"1\tabc\t\\N", `a\\b\tc\nd`, `\101\x41\x4`, `\`, "\t", "", `\N`, `\xZ\777`} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, line []byte, n uint8) {
		if bytes.IndexByte(line, '\n') >= 0 {
			return // lines are cut at newlines before decoding
		}
		ncols := int(n % 8)
		row, _, err := decodeCopyLine(nil, nil, line, ncols)
		if err != nil {
			return
		}
		if len(row) != ncols {
			t.Fatalf("%d values, want %d", len(row), ncols)
		}
		row = cloneRow(row)
		enc := appendCopyText(nil, row)
		again, _, err := decodeCopyLine(nil, nil, enc, ncols)
		if err != nil {
			t.Fatalf("re-decoding %q (from %q): %v", enc, line, err)
		}
		for i := range row {
			if row[i].State != again[i].State || !bytes.Equal(row[i].Raw, again[i].Raw) {
				t.Fatalf("column %d: %q then %q (line %q, encoded %q)", i, row[i].Raw, again[i].Raw, line, enc)
			}
		}
	})
}

// Any row survives encoding then decoding: the property the other way round.
func FuzzCopyRoundTrip(f *testing.F) {
	f.Add([]byte("a\tb\\c\nd"), []byte(`\N`), true)
	f.Fuzz(func(t *testing.T, a, b []byte, bNull bool) {
		row := event.Row{{State: event.Text, Raw: a}, {State: event.Text, Raw: b}}
		if bNull {
			row[1] = event.Value{State: event.Null}
		}
		got, _, err := decodeCopyLine(nil, nil, appendCopyText(nil, row), 2)
		if err != nil {
			t.Fatal(err)
		}
		for i := range row {
			if row[i].State != got[i].State || !bytes.Equal(row[i].Raw, got[i].Raw) {
				t.Fatalf("column %d: %q became %q", i, row[i].Raw, got[i].Raw)
			}
		}
	})
}
