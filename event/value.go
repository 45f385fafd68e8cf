package event

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends the JSON form of the value (DESIGN.md, type mapping) to
// dst, converting straight from Postgres's text form. A value whose text does
// not parse as its type is written as a JSON string of that text, so nothing
// is lost and the output stays valid JSON.
func (v Value) AppendJSON(dst []byte, t *Type) []byte {
	if v.State != Text {
		return append(dst, "null"...)
	}
	return appendTextAsJSON(dst, v.Raw, t)
}

func appendTextAsJSON(dst, raw []byte, t *Type) []byte {
	if t == nil {
		return appendString(dst, raw)
	}
	switch t.Kind {
	case KindInt:
		if isInteger(raw) {
			return append(dst, raw...)
		}
	case KindFloat:
		if isJSONNumber(raw) {
			return append(dst, raw...)
		}
	case KindBool:
		switch string(raw) {
		case "t", "true":
			return append(dst, "true"...)
		case "f", "false":
			return append(dst, "false"...)
		}
	case KindJSON:
		if json.Valid(raw) {
			return appendJSONOneLine(dst, raw)
		}
	case KindBytea:
		if b, ok := decodeBytea(raw); ok {
			dst = append(dst, '"')
			dst = base64.StdEncoding.AppendEncode(dst, b)
			return append(dst, '"')
		}
	case KindTimestamp:
		if len(raw) > 10 && raw[10] == ' ' {
			dst = append(dst, '"')
			dst = append(dst, raw[:10]...)
			dst = append(dst, 'T')
			dst = append(dst, raw[11:]...)
			return append(dst, '"')
		}
	case KindTimestamptz:
		if n := len(raw); n > 13 && raw[10] == ' ' && raw[n-3] == '+' && raw[n-2] == '0' && raw[n-1] == '0' {
			// The common case in UTC sessions, rewritten in place of a copy.
			dst = append(dst, '"')
			dst = append(dst, raw[:10]...)
			dst = append(dst, 'T')
			dst = append(dst, raw[11:n-3]...)
			return append(dst, 'Z', '"')
		}
		if ts, ok := timestamptzUTC(raw); ok {
			dst = append(dst, '"')
			dst = append(dst, ts...)
			return append(dst, '"')
		}
	case KindArray:
		if t.Elem != nil {
			if n, err := parseArray(raw, t.Elem.Delim); err == nil {
				return n.appendJSON(dst, t.Elem)
			}
		}
	}
	return appendString(dst, raw)
}

// Decode returns the Go value of the JSON mapping: int64 for integers,
// float64 for floats, string for numeric and text-like types, bool, any for
// json/jsonb (as encoding/json decodes it, numbers as json.Number), []byte for
// bytea, time.Time for timestamps (UTC for timestamptz), string for dates and
// []any for arrays. SQL NULL is nil.
func (v Value) Decode(t *Type) (any, error) {
	if v.State != Text {
		return nil, nil
	}
	return decodeText(v.Raw, t)
}

func decodeText(raw []byte, t *Type) (any, error) {
	if t == nil {
		return string(raw), nil
	}
	switch t.Kind {
	case KindInt:
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("decoding %s %q: %w", t.Name, raw, err)
		}
		return n, nil
	case KindFloat:
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return nil, fmt.Errorf("decoding %s %q: %w", t.Name, raw, err)
		}
		return f, nil
	case KindBool:
		return len(raw) > 0 && raw[0] == 't', nil
	case KindJSON:
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		var x any
		if err := d.Decode(&x); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", t.Name, err)
		}
		return x, nil
	case KindBytea:
		b, ok := decodeBytea(raw)
		if !ok {
			return nil, fmt.Errorf("decoding bytea %q: not in hex or escape format", raw)
		}
		return b, nil
	case KindTimestamp, KindTimestamptz:
		if isInfinity(raw) {
			return string(raw), nil
		}
		s := string(raw)
		if t.Kind == KindTimestamptz {
			if ts, ok := timestamptzUTC(raw); ok {
				s = string(ts)
			}
			tm, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return nil, fmt.Errorf("decoding %s %q: %w", t.Name, raw, err)
			}
			return tm, nil
		}
		tm, err := time.Parse("2006-01-02 15:04:05.999999999", s)
		if err != nil {
			return nil, fmt.Errorf("decoding %s %q: %w", t.Name, raw, err)
		}
		return tm, nil
	case KindArray:
		if t.Elem == nil {
			return string(raw), nil
		}
		n, err := parseArray(raw, t.Elem.Delim)
		if err != nil {
			return nil, fmt.Errorf("decoding %s: %w", t.Name, err)
		}
		return n.decode(t.Elem)
	}
	return string(raw), nil
}

func isInfinity(raw []byte) bool {
	return string(raw) == "infinity" || string(raw) == "-infinity"
}

func isInteger(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 20 {
		return false
	}
	if len(b) > 1 && b[0] == '0' { // JSON has no leading zeros
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isJSONNumber accepts what Postgres prints for finite floats and rejects
// NaN and the infinities, which JSON cannot hold as numbers.
func isJSONNumber(b []byte) bool {
	if len(b) == 0 || len(b) > 40 {
		return false
	}
	i := 0
	if b[0] == '-' {
		i++
	}
	digits := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
		digits++
	}
	if digits == 0 || (digits > 1 && b[i-digits] == '0') { // JSON has no leading zeros
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		frac := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			frac++
		}
		if frac == 0 {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		exp := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			exp++
		}
		if exp == 0 {
			return false
		}
	}
	return i == len(b)
}

// appendJSONOneLine copies valid JSON text, turning line breaks (which in
// valid JSON can only be whitespace between tokens) into spaces so that one
// event stays on one line.
func appendJSONOneLine(dst, raw []byte) []byte {
	start := len(dst)
	dst = append(dst, raw...)
	for i := start; i < len(dst); i++ {
		if dst[i] == '\n' || dst[i] == '\r' {
			dst[i] = ' '
		}
	}
	return dst
}

// decodeBytea reads bytea in hex ("\x0102") or escape ("a\\001") output format.
func decodeBytea(raw []byte) ([]byte, bool) {
	if len(raw) >= 2 && raw[0] == '\\' && raw[1] == 'x' {
		b := make([]byte, hex.DecodedLen(len(raw)-2))
		if _, err := hex.Decode(b, raw[2:]); err != nil {
			return nil, false
		}
		return b, true
	}
	b := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			b = append(b, c)
			continue
		}
		if i+1 < len(raw) && raw[i+1] == '\\' {
			b = append(b, '\\')
			i++
			continue
		}
		if i+3 < len(raw) && isOctal(raw[i+1]) && isOctal(raw[i+2]) && isOctal(raw[i+3]) {
			b = append(b, (raw[i+1]-'0')<<6|(raw[i+2]-'0')<<3|(raw[i+3]-'0'))
			i += 3
			continue
		}
		return nil, false
	}
	return b, true
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// timestamptzUTC turns Postgres's ISO output ("2026-11-23 04:56:29.368123+00")
// into RFC 3339 in UTC ("2026-11-23T04:56:29.368123Z"). Sessions that pgfeed
// opens use TimeZone=UTC, so the fast path is a rewrite; other offsets are
// parsed and converted. Infinities and BC dates are not RFC 3339 and report
// false, so they pass through as text.
func timestamptzUTC(raw []byte) ([]byte, bool) {
	n := len(raw)
	if n > 13 && raw[10] == ' ' && raw[n-3] == '+' && raw[n-2] == '0' && raw[n-1] == '0' {
		out := make([]byte, 0, n)
		out = append(out, raw[:10]...)
		out = append(out, 'T')
		out = append(out, raw[11:n-3]...)
		return append(out, 'Z'), true
	}
	for _, layout := range []string{"2006-01-02 15:04:05.999999999-07", "2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05.999999999-07:00:00"} {
		if tm, err := time.Parse(layout, string(raw)); err == nil {
			return tm.UTC().AppendFormat(nil, "2006-01-02T15:04:05.999999Z"), true
		}
	}
	return nil, false
}

// appendString appends b as a JSON string. Invalid UTF-8 becomes U+FFFD so
// that the output is always valid JSON.
func appendString(dst, b []byte) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, b[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, b[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, b[start:]...)
	return append(dst, '"')
}

// AppendJSONString appends s as a JSON string; encoders of other formats use it.
func AppendJSONString(dst []byte, s string) []byte {
	return appendString(dst, []byte(s))
}
