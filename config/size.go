package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// sizeUnits are the units ParseSize knows, lowercased. kB, MB, GB and TB are
// powers of 1000 and KiB, MiB, GiB and TiB powers of 1024, as the SI and IEC
// define them. (PostgreSQL's own settings read "MB" as 1024*1024; write
// "MiB" to mean that.)
var sizeUnits = map[string]int64{
	"":    1,
	"b":   1,
	"kb":  1000,
	"mb":  1000 * 1000,
	"gb":  1000 * 1000 * 1000,
	"tb":  1000 * 1000 * 1000 * 1000,
	"kib": 1 << 10,
	"mib": 1 << 20,
	"gib": 1 << 30,
	"tib": 1 << 40,
}

// ParseSize parses a number of bytes: "4096", "64MB", "1.5GiB", "512 kB".
// Units are case-insensitive; a unit without its B ("64M") is refused,
// since "1m" reads as a minute as easily as a megabyte.
func ParseSize(s string) (int64, error) {
	bad := func(why string) error {
		if why != "" {
			return fmt.Errorf("invalid size %q: %s", s, why)
		}
		return fmt.Errorf("invalid size %q (want e.g. \"64MB\", \"1GiB\" or a number of bytes)", s)
	}
	t := strings.TrimSpace(s)
	end := 0
	for end < len(t) && (t[end] >= '0' && t[end] <= '9' || t[end] == '.') {
		end++
	}
	num, unit := t[:end], strings.ToLower(strings.TrimSpace(t[end:]))
	if strings.HasPrefix(t, "-") {
		return 0, bad("must not be negative")
	}
	mult, ok := sizeUnits[unit]
	if num == "" || !ok {
		return 0, bad("")
	}
	if n, err := strconv.ParseInt(num, 10, 64); err == nil {
		if n > math.MaxInt64/mult {
			return 0, bad("too large")
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, bad("too large")
		}
		return 0, bad("")
	}
	v := f * float64(mult)
	if v >= math.MaxInt64 {
		return 0, bad("too large")
	}
	return int64(v), nil
}

// Retain is the window of delayed confirmation of a PostgreSQL source: the
// source confirms a position to PostgreSQL only once it is this old, or this
// far behind the newest one, so that PostgreSQL keeps that much WAL and a
// slot can be rewound to replay it. At most one field is set; the zero
// Retain confirms as soon as every sink has acknowledged.
type Retain struct {
	Age   time.Duration // retain = "1h"
	Bytes int64         // retain = "512MB", or a number of bytes
}

// parseRetain reads a retain setting: a size or a duration.
func parseRetain(s string) (Retain, error) {
	if n, err := ParseSize(s); err == nil {
		return Retain{Bytes: n}, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return Retain{}, fmt.Errorf("invalid retain %q (want a duration such as \"1h\" or a size such as \"512MB\")", s)
	}
	if d < 0 {
		return Retain{}, fmt.Errorf("invalid retain %q: must not be negative", s)
	}
	return Retain{Age: d}, nil
}
