package encode

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// pgDate prints a date the way Postgres does with DateStyle ISO, from the
// time package's calendar: four-digit (or longer) years, " BC" for year 0
// and before.
func pgDate(t time.Time) string {
	y := t.Year()
	suffix := ""
	if y <= 0 {
		y, suffix = 1-y, " BC"
	}
	return fmt.Sprintf("%04d-%02d-%02d%s", y, t.Month(), t.Day(), suffix)
}

func TestParseDate(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1970-01-01", 0, true},
		{"2026-11-23", time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC).Unix() / 86400, true},
		{"2000-02-29", time.Date(2000, 2, 29, 0, 0, 0, 0, time.UTC).Unix() / 86400, true},
		{"1969-12-31", -1, true},
		{"0001-01-01 BC", time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).Unix() / 86400, true},
		{"4713-11-24 BC", time.Date(-4712, 11, 24, 0, 0, 0, 0, time.UTC).Unix() / 86400, true},
		{"5874897-12-31", time.Date(5874897, 12, 31, 0, 0, 0, 0, time.UTC).Unix() / 86400, true},
		{"infinity", math.MaxInt32, true},
		{"-infinity", math.MinInt32, true},
		{"23/11/2026", 0, false},
		{"2026-13-01", 0, false},
		{"2026-11-23x", 0, false},
		{"26-11-23", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseDate([]byte(tt.in))
		if ok != tt.ok || (ok && int64(got) != tt.want) {
			t.Errorf("parseDate(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// TestParseDateRandom compares with the time package over Postgres's whole
// date range, including the years before Christ.
func TestParseDateRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	lo := time.Date(-4712, 11, 24, 0, 0, 0, 0, time.UTC).Unix() / 86400
	hi := time.Date(5874897, 12, 31, 0, 0, 0, 0, time.UTC).Unix() / 86400
	for range 20000 {
		days := lo + r.Int64N(hi-lo+1)
		d := time.Unix(days*86400, 0).UTC()
		s := pgDate(d)
		got, ok := parseDate([]byte(s))
		if !ok || int64(got) != days {
			t.Fatalf("parseDate(%q) = %d, %v; want %d", s, got, ok, days)
		}
	}
}

func TestParseTimestamps(t *testing.T) {
	micro := func(tm time.Time) int64 { return tm.UnixMicro() }
	tests := []struct {
		f    func([]byte) (int64, bool)
		in   string
		want int64
		ok   bool
	}{
		{parseTimestamp, "2026-11-23 04:56:29.368123", micro(time.Date(2026, 11, 23, 4, 56, 29, 368123000, time.UTC)), true},
		{parseTimestamp, "2026-11-23 04:56:29", micro(time.Date(2026, 11, 23, 4, 56, 29, 0, time.UTC)), true},
		{parseTimestamp, "2026-11-23 04:56:29.5", micro(time.Date(2026, 11, 23, 4, 56, 29, 500000000, time.UTC)), true},
		{parseTimestamp, "1969-12-31 23:59:59.999999", -1, true},
		{parseTimestamp, "0044-03-15 12:00:00 BC", micro(time.Date(-43, 3, 15, 12, 0, 0, 0, time.UTC)), true},
		{parseTimestamp, "infinity", math.MaxInt64, true},
		{parseTimestamp, "-infinity", math.MinInt64, true},
		{parseTimestamp, "2026-11-23", 0, false},
		{parseTimestamp, "2026-11-23T04:56:29", 0, false},
		{parseTimestamp, "2026-11-23 04:56:29.1234567", 0, false},
		{parseTimestamp, "2026-11-23 04:56:29+00", 0, false},
		{parseTimestamptz, "2026-11-23 04:56:29.368123+00", micro(time.Date(2026, 11, 23, 4, 56, 29, 368123000, time.UTC)), true},
		{parseTimestamptz, "2026-11-23 10:26:29.368123+05:30", micro(time.Date(2026, 11, 23, 4, 56, 29, 368123000, time.UTC)), true},
		{parseTimestamptz, "1900-01-01 00:00:00-00:09:21", micro(time.Date(1900, 1, 1, 0, 9, 21, 0, time.UTC)), true},
		{parseTimestamptz, "0044-03-15 12:00:00+00 BC", micro(time.Date(-43, 3, 15, 12, 0, 0, 0, time.UTC)), true},
		{parseTimestamptz, "infinity", math.MaxInt64, true},
		{parseTimestamptz, "2026-11-23 04:56:29", 0, false},
		{parseTimestamptz, "2026-11-23 04:56:29+5", 0, false},
		{parseTimestamptz, "2026-11-23 04:56:29+05:30 extra", 0, false},
		{parseTime, "04:56:29.368123", (4*3600+56*60+29)*1_000_000 + 368123, true},
		{parseTime, "00:00:00", 0, true},
		{parseTime, "24:00:00", 86_400_000_000, true},
		{parseTime, "24:00:01", 0, false},
		{parseTime, "4:56:29", 0, false},
		{parseTimetz, "04:56:29.368123+05:30", (23*3600+26*60+29)*1_000_000 + 368123, true},
		{parseTimetz, "23:00:00-02", 3600 * 1_000_000, true},
		{parseTimetz, "12:00:00+00", 12 * 3600 * 1_000_000, true},
		{parseTimetz, "12:00:00", 0, false},
	}
	for _, tt := range tests {
		got, ok := tt.f([]byte(tt.in))
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("%q: got %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestAppendClock(t *testing.T) {
	tests := []struct {
		us   int64
		want string
	}{
		{0, "00:00:00"},
		{(23*3600+26*60+29)*1_000_000 + 368123, "23:26:29.368123"},
		{(1*3600)*1_000_000 + 500000, "01:00:00.5"},
		{86_400_000_000, "24:00:00"},
	}
	for _, tt := range tests {
		if got := string(appendClock(nil, tt.us)); got != tt.want {
			t.Errorf("appendClock(%d) = %s, want %s", tt.us, got, tt.want)
		}
	}
}

func TestFloorDiv(t *testing.T) {
	for _, tt := range [][3]int64{{7, 2, 3}, {-7, 2, -4}, {-1, 1000, -1}, {-1000, 1000, -1}, {0, 5, 0}} {
		if got := floorDiv(tt[0], tt[1]); got != tt[2] {
			t.Errorf("floorDiv(%d, %d) = %d, want %d", tt[0], tt[1], got, tt[2])
		}
	}
}

// FuzzTemporal feeds arbitrary bytes to the parsers of outside text: they
// must not panic, and what they accept must survive a round trip through
// the time package.
func FuzzTemporal(f *testing.F) {
	for _, s := range []string{"2026-11-23", "0044-03-15 BC", "2026-11-23 04:56:29.368123+05:30", "24:00:00", "infinity", "99999-01-01 00:00:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := []byte(s)
		if days, ok := parseDate(b); ok && days != math.MaxInt32 && days != math.MinInt32 {
			back := pgDate(time.Unix(int64(days)*86400, 0).UTC())
			if again, ok := parseDate([]byte(back)); !ok || again != days {
				t.Errorf("%q -> %d -> %q -> %d", s, days, back, again)
			}
		}
		parseTimestamp(b)
		parseTimestamptz(b)
		parseTime(b)
		parseTimetz(b)
	})
}
