package encode

import (
	"encoding/base64"
	"fmt"
	"math/big"

	"github.com/pgfeed/pgfeed/event"
)

// appendDebeziumDecimal appends a numeric or money value in the form of
// the column's decimal handling (dbzDecimal and the others). Precise forms
// cannot hold NaN or ±Infinity: those are null, as Debezium writes them.
func appendDebeziumDecimal(dst, raw []byte, col *event.Column, conv dbzConv) ([]byte, error) {
	if conv == dbzMoney || conv == dbzMoneyText || conv == dbzMoneyDouble {
		raw = moneyDigits(raw)
	}
	if isSpecialNumber(raw) {
		if conv == dbzDouble || conv == dbzMoneyDouble {
			return appendRawString(dst, raw), nil // like real and double precision
		}
		return append(dst, "null"...), nil
	}
	unscaled, scale, ok := parseDecimal(raw)
	if !ok {
		return dst, fmt.Errorf("value %q is not a decimal number", raw)
	}
	switch conv {
	case dbzMoneyText:
		return appendRawString(dst, raw), nil
	case dbzDouble, dbzMoneyDouble:
		if isNumberText(raw) {
			return append(dst, raw...), nil
		}
		return appendRawString(dst, raw), nil
	case dbzVariableDecimal:
		dst = append(dst, `{"scale":`...)
		dst = appendInt(dst, int64(scale))
		dst = append(dst, `,"value":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, twosComplement(unscaled))
		return append(dst, `"}`...), nil
	}
	// A fixed scale: the column's (numeric(p,s)), or 2 for money.
	want := int64(2)
	if conv == dbzDecimal {
		m := int64(col.TypeMod) - 4
		want = ((m & 0x7ff) ^ 1024) - 1024
	}
	ten := big.NewInt(10)
	switch d := want - int64(scale); {
	case d > 0:
		unscaled.Mul(unscaled, new(big.Int).Exp(ten, big.NewInt(d), nil))
	case d < 0:
		q, r := new(big.Int).QuoRem(unscaled, new(big.Int).Exp(ten, big.NewInt(-d), nil), new(big.Int))
		if r.Sign() != 0 {
			return dst, fmt.Errorf("value %q has more digits than the scale %d of its column", raw, want)
		}
		unscaled = q
	}
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, twosComplement(unscaled))
	return append(dst, '"'), nil
}

// parseDecimal parses Postgres's numeric text ("-12.50") into its unscaled
// integer (-1250) and scale (2).
func parseDecimal(b []byte) (*big.Int, int, bool) {
	digits := make([]byte, 0, len(b))
	scale, dot := 0, false
	for i, c := range b {
		switch {
		case (c == '-' || c == '+') && i == 0:
			if c == '-' {
				digits = append(digits, '-')
			}
		case c == '.' && !dot:
			dot = true
		case c >= '0' && c <= '9':
			digits = append(digits, c)
			if dot {
				scale++
			}
		default:
			return nil, 0, false
		}
	}
	v, ok := new(big.Int).SetString(string(digits), 10)
	return v, scale, ok
}

// twosComplement is the big-endian two's complement of x in the fewest
// bytes, what Java's BigInteger.toByteArray gives Kafka Connect's Decimal.
func twosComplement(x *big.Int) []byte {
	if x.Sign() >= 0 {
		b := x.Bytes()
		if len(b) == 0 || b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return b
	}
	abs := new(big.Int).Neg(x)
	n := new(big.Int).Sub(abs, big.NewInt(1)).BitLen()/8 + 1
	v := new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), uint(8*n)), x)
	b := v.Bytes()
	for len(b) < n {
		b = append([]byte{0}, b...)
	}
	return b
}

// moneyDigits drops money's currency symbol and group separators
// ("-$1,234.56" is -1234.56), as Postgres prints it under lc_monetary C.
func moneyDigits(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == '-' || c == '.' || (c >= '0' && c <= '9') {
			out = append(out, c)
		}
	}
	return out
}

// daysPerMonth is Debezium's MicroDuration.DAYS_PER_MONTH_AVG (365.25/12):
// months and years of an interval count as that many days.
const daysPerMonth = 365.25 / 12

// parseIntervalMicros reads an interval in IntervalStyle postgres ("1 year
// 2 mons 3 days 04:05:06.789", "-00:00:01") into microseconds, as
// Debezium's MicroDuration approximates them.
func parseIntervalMicros(b []byte) (int64, bool) {
	var months, days, micros int64
	s := string(b)
	for len(s) > 0 {
		for len(s) > 0 && s[0] == ' ' {
			s = s[1:]
		}
		if s == "" {
			break
		}
		end := 0
		for end < len(s) && s[end] != ' ' {
			end++
		}
		tok := s[:end]
		s = s[end:]
		if containsByte(tok, ':') {
			neg := tok[0] == '-'
			if neg || tok[0] == '+' {
				tok = tok[1:]
			}
			us, ok := parseHMS(tok)
			if !ok {
				return 0, false
			}
			if neg {
				us = -us
			}
			micros += us
			continue
		}
		n, err := parseInt(tok)
		if err != nil {
			return 0, false
		}
		for len(s) > 0 && s[0] == ' ' {
			s = s[1:]
		}
		end = 0
		for end < len(s) && s[end] != ' ' {
			end++
		}
		unit := s[:end]
		s = s[end:]
		switch unit {
		case "year", "years":
			months += 12 * n
		case "mon", "mons":
			months += n
		case "day", "days":
			days += n
		default:
			return 0, false
		}
	}
	total := (float64(months)*daysPerMonth+float64(days))*86400e6 + float64(micros)
	return int64(total), true
}

// parseHMS reads HH:MM:SS[.ffffff] (hours may exceed 24) into microseconds.
func parseHMS(s string) (int64, bool) {
	var parts [3]string
	for i := 0; i < 2; i++ {
		j := 0
		for j < len(s) && s[j] != ':' {
			j++
		}
		if j == len(s) {
			return 0, false
		}
		parts[i], s = s[:j], s[j+1:]
	}
	parts[2] = s
	h, err1 := parseInt(parts[0])
	m, err2 := parseInt(parts[1])
	if err1 != nil || err2 != nil {
		return 0, false
	}
	sec, frac := parts[2], ""
	for i := 0; i < len(sec); i++ {
		if sec[i] == '.' {
			sec, frac = sec[:i], sec[i+1:]
			break
		}
	}
	sv, err := parseInt(sec)
	if err != nil || len(frac) > 6 {
		return 0, false
	}
	us := int64(0)
	for i := 0; i < 6; i++ {
		us *= 10
		if i < len(frac) {
			if frac[i] < '0' || frac[i] > '9' {
				return 0, false
			}
			us += int64(frac[i] - '0')
		}
	}
	return ((h*60+m)*60+sv)*1_000_000 + us, true
}

func parseInt(s string) (int64, error) {
	var n int64
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg, s = s[0] == '-', s[1:]
	}
	if s == "" || len(s) > 18 {
		return 0, fmt.Errorf("not a number: %q", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("not a number: %q", s)
		}
		n = n*10 + int64(s[i]-'0')
	}
	if neg {
		n = -n
	}
	return n, nil
}

func containsByte(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}
