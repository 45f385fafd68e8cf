package encode

import "math"

// Debezium and Avro carry dates and times as integers counted from the Unix
// epoch, where the native JSON carries strings. These parsers read Postgres's
// ISO output (DateStyle ISO, which pgfeed's sessions use) straight from the
// bytes, without allocating, including the forms time.Parse cannot read:
// years beyond 9999, " BC" dates and ±infinity.
//
// Postgres itself stores infinity as the largest and smallest value of its
// integer representation (DT_NOEND/DT_NOBEGIN for timestamps,
// DATEVAL_NOEND/DATEVAL_NOBEGIN for dates); the integer encodings here keep
// that convention, so an infinite value stays distinguishable from every
// real one and sorts where it should.
const (
	dateInfinity         = math.MaxInt32
	dateNegInfinity      = math.MinInt32
	timestampInfinity    = math.MaxInt64
	timestampNegInfinity = math.MinInt64

	microsPerSecond = 1_000_000
	microsPerDay    = 86_400 * microsPerSecond
)

// parseDate reads "2026-11-23", "0044-03-15 BC", "infinity" or "-infinity"
// and returns days since 1970-01-01.
func parseDate(b []byte) (int32, bool) {
	switch string(b) {
	case "infinity":
		return dateInfinity, true
	case "-infinity":
		return dateNegInfinity, true
	}
	b, bc := cutBC(b)
	days, rest, ok := parseYMD(b, bc)
	if !ok || len(rest) != 0 || days < math.MinInt32+1 || days > math.MaxInt32-1 {
		return 0, false
	}
	return int32(days), true
}

// parseTimestamp reads a timestamp without time zone ("2026-11-23
// 04:56:29.368123") and returns microseconds since 1970-01-01 00:00:00, as
// if the wall-clock time were UTC.
func parseTimestamp(b []byte) (int64, bool) {
	micros, rest, inf, ok := parseDateTime(b)
	if inf || !ok {
		return micros, ok
	}
	return micros, len(rest) == 0
}

// parseTimestamptz reads a timestamp with time zone ("2026-11-23
// 04:56:29.368123+00", offsets like "+05:30" or "-03:00:00" too) and
// returns microseconds since the Unix epoch.
func parseTimestamptz(b []byte) (int64, bool) {
	micros, rest, inf, ok := parseDateTime(b)
	if inf || !ok {
		return micros, ok
	}
	off, ok := parseOffset(rest)
	if !ok {
		return 0, false
	}
	return micros - off*microsPerSecond, true
}

// parseDateTime reads the date and clock that both timestamp types start
// with, returning microseconds since 1970-01-01 of the wall-clock time and
// what follows it. The infinities come back as their stored extremes, with
// inf set and nothing to follow.
func parseDateTime(b []byte) (micros int64, rest []byte, inf, ok bool) {
	switch string(b) {
	case "infinity":
		return timestampInfinity, nil, true, true
	case "-infinity":
		return timestampNegInfinity, nil, true, true
	}
	b, bc := cutBC(b)
	days, rest, ok := parseYMD(b, bc)
	if !ok || len(rest) < 1 || rest[0] != ' ' {
		return 0, nil, false, false
	}
	tod, rest, ok := parseClock(rest[1:])
	if !ok {
		return 0, nil, false, false
	}
	return days*microsPerDay + tod, rest, false, true
}

// parseTime reads a time without time zone ("04:56:29.368123") and returns
// microseconds since midnight. Postgres allows "24:00:00", and so do we.
func parseTime(b []byte) (int64, bool) {
	tod, rest, ok := parseClock(b)
	return tod, ok && len(rest) == 0
}

// parseTimetz reads a time with time zone ("04:56:29.368123+05:30") and
// returns the same instant as microseconds since midnight UTC, wrapped into
// one day, which is how Debezium normalises it.
func parseTimetz(b []byte) (int64, bool) {
	tod, rest, ok := parseClock(b)
	if !ok {
		return 0, false
	}
	off, ok := parseOffset(rest)
	if !ok {
		return 0, false
	}
	utc := (tod - off*microsPerSecond) % microsPerDay
	if utc < 0 {
		utc += microsPerDay
	}
	return utc, true
}

// cutBC removes the " BC" suffix Postgres prints after a date in the first
// millennium before Christ and later, even after a time zone.
func cutBC(b []byte) ([]byte, bool) {
	if n := len(b); n > 3 && string(b[n-3:]) == " BC" {
		return b[:n-3], true
	}
	return b, false
}

// parseYMD reads "YYYY-MM-DD" (four or more year digits) at the start of b
// and returns days since 1970-01-01 and what follows. Year 1 BC is year 0 of
// the proleptic Gregorian calendar that both Postgres and this arithmetic use.
func parseYMD(b []byte, bc bool) (days int64, rest []byte, ok bool) {
	i := 0
	var year int64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		if i >= 7 { // Postgres's range ends in year 5874897
			return 0, nil, false
		}
		year = year*10 + int64(b[i]-'0')
		i++
	}
	if i < 4 || len(b) < i+6 || b[i] != '-' || b[i+3] != '-' {
		return 0, nil, false
	}
	month, ok1 := twoDigits(b[i+1:])
	day, ok2 := twoDigits(b[i+4:])
	if !ok1 || !ok2 || month < 1 || month > 12 || day < 1 || day > 31 {
		return 0, nil, false
	}
	if bc {
		year = 1 - year
	}
	return daysFromCivil(year, month, day), b[i+6:], true
}

// daysFromCivil counts days from 1970-01-01 to a proleptic Gregorian date,
// for any year, negative included, by splitting time into 400-year eras of
// exactly 146097 days.
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400 // [0, 399]
	mp := (m + 9) % 12 // March is 0, so the leap day ends the year
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// parseClock reads "HH:MM:SS" with an optional fraction of up to six digits
// and returns microseconds since midnight and what follows.
func parseClock(b []byte) (int64, []byte, bool) {
	if len(b) < 8 || b[2] != ':' || b[5] != ':' {
		return 0, nil, false
	}
	h, ok1 := twoDigits(b)
	m, ok2 := twoDigits(b[3:])
	s, ok3 := twoDigits(b[6:])
	if !ok1 || !ok2 || !ok3 || h > 24 || m > 59 || s > 60 {
		return 0, nil, false
	}
	us := ((h*60+m)*60 + s) * microsPerSecond
	b = b[8:]
	if len(b) > 0 && b[0] == '.' {
		scale := int64(100_000)
		i := 1
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			if i > 6 {
				return 0, nil, false // Postgres keeps microseconds at most
			}
			us += int64(b[i]-'0') * scale
			scale /= 10
		}
		if i == 1 {
			return 0, nil, false
		}
		b = b[i:]
	}
	if us > microsPerDay {
		return 0, nil, false
	}
	return us, b, true
}

// parseOffset reads a UTC offset as Postgres prints it: "+HH", "+HH:MM" or
// "+HH:MM:SS", and nothing after it. It returns seconds east of UTC.
func parseOffset(b []byte) (int64, bool) {
	if len(b) < 3 || (b[0] != '+' && b[0] != '-') {
		return 0, false
	}
	negative := b[0] == '-'
	h, ok := twoDigits(b[1:])
	if !ok {
		return 0, false
	}
	sec := h * 3600
	b = b[3:]
	for _, unit := range [...]int64{60, 1} {
		if len(b) == 0 {
			break
		}
		if len(b) < 3 || b[0] != ':' {
			return 0, false
		}
		v, ok := twoDigits(b[1:])
		if !ok || v > 59 {
			return 0, false
		}
		sec += v * unit
		b = b[3:]
	}
	if len(b) != 0 || sec > 24*3600 {
		return 0, false
	}
	if negative {
		sec = -sec
	}
	return sec, true
}

func twoDigits(b []byte) (int64, bool) {
	if len(b) < 2 || b[0] < '0' || b[0] > '9' || b[1] < '0' || b[1] > '9' {
		return 0, false
	}
	return int64(b[0]-'0')*10 + int64(b[1]-'0'), true
}

// appendClock appends microseconds since midnight as "HH:MM:SS" with the
// fraction's trailing zeros dropped, the ISO local-time form.
func appendClock(dst []byte, us int64) []byte {
	sec := us / microsPerSecond
	frac := us % microsPerSecond
	dst = append2(dst, sec/3600)
	dst = append(dst, ':')
	dst = append2(dst, sec/60%60)
	dst = append(dst, ':')
	dst = append2(dst, sec%60)
	if frac != 0 {
		var buf [7]byte
		buf[0] = '.'
		for i := 6; i >= 1; i-- {
			buf[i] = byte('0' + frac%10)
			frac /= 10
		}
		n := 7
		for buf[n-1] == '0' {
			n--
		}
		dst = append(dst, buf[:n]...)
	}
	return dst
}

func append2(dst []byte, v int64) []byte {
	return append(dst, byte('0'+v/10), byte('0'+v%10))
}

// floorDiv divides rounding toward negative infinity, so that instants
// before the epoch truncate to the earlier millisecond, as Java's
// Instant.toEpochMilli does for Debezium.
func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
