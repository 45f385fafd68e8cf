package config

import (
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	getenv := env("USER", "ann", "EMPTY", "", "TRICKY", "${USER}", "DOLLAR", "$")
	tests := []struct {
		in, want, wantErr string
	}{
		{in: "plain", want: "plain"},
		{in: "${USER}", want: "ann"},
		{in: "a-${USER}-b-${USER}", want: "a-ann-b-ann"},
		{in: "${EMPTY}", want: ""},
		{in: "${MISSING:-fallback}", want: "fallback"},
		{in: "${EMPTY:-fallback}", want: "fallback"}, // as a shell's :-
		{in: "${USER:-fallback}", want: "ann"},
		{in: "${MISSING:-}", want: ""},
		{in: "${MISSING:-a:-b}", want: "a:-b"},
		{in: "${TRICKY}", want: "${USER}"}, // values are not expanded again
		{in: "${DOLLAR}{USER}", want: "${USER}"},
		{in: "pa$word $1 $USER $", want: "pa$word $1 $USER $"},
		{in: "$${USER}", want: "${USER}"},
		{in: "$$${USER}", want: "$${USER}"},
		{in: "${MISSING}", wantErr: "environment variable MISSING is not set (set it, or give a default: ${MISSING:-value})"},
		{in: "x ${USER", wantErr: `unclosed "${" at "${USER"`},
		{in: "${}", wantErr: `invalid environment variable name "" in "${}"`},
		{in: "${1X}", wantErr: `invalid environment variable name "1X" in "${1X}"`},
		{in: "${A-B}", wantErr: `invalid environment variable name "A-B" in "${A-B}"`},
		{in: "${A:-${B}}", wantErr: `"${A:-${B}": a default cannot refer to another variable`},
	}
	for _, tt := range tests {
		got, err := expand(tt.in, getenv)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("expand(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// FuzzExpand checks that expansion never panics, leaves text without "${"
// alone, and never expands what a variable holds.
func FuzzExpand(f *testing.F) {
	for _, s := range []string{"${A}", "$${A}", "${A:-x}", "${", "}${B", "a$b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := expand(s, env("A", "${B}", "B", "never"))
		if !strings.Contains(s, "${") && (err != nil || got != s) {
			t.Fatalf("expand(%q) = %q, %v: changed text without ${", s, got, err)
		}
		if err == nil && strings.Contains(got, "never") && !strings.Contains(s, "never") && !strings.Contains(s, "${B") {
			t.Fatalf("expand(%q) = %q: expanded a variable's value", s, got)
		}
	})
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{in: "0", want: 0},
		{in: "4096", want: 4096},
		{in: "64MB", want: 64_000_000},
		{in: "64mb", want: 64_000_000},
		{in: "64MiB", want: 64 << 20},
		{in: "1GiB", want: 1 << 30},
		{in: "1.5GiB", want: 3 << 29},
		{in: "512 kB", want: 512_000},
		{in: "2TB", want: 2e12},
		{in: "10B", want: 10},
		{in: "8EiB", wantErr: `invalid size "8EiB" (want e.g. "64MB", "1GiB" or a number of bytes)`},
		{in: "64XB", wantErr: `invalid size "64XB" (want e.g. "64MB", "1GiB" or a number of bytes)`},
		{in: "64M", wantErr: `invalid size "64M" (want e.g. "64MB", "1GiB" or a number of bytes)`},
		{in: "MB", wantErr: `invalid size "MB" (want e.g. "64MB", "1GiB" or a number of bytes)`},
		{in: "", wantErr: `invalid size "" (want e.g. "64MB", "1GiB" or a number of bytes)`},
		{in: "1.2.3MB", wantErr: `invalid size "1.2.3MB" (want e.g. "64MB", "1GiB" or a number of bytes)`},
		{in: "-1MB", wantErr: `invalid size "-1MB": must not be negative`},
		{in: "9999999TiB", wantErr: `invalid size "9999999TiB": too large`},
		{in: "9999999999.5TiB", wantErr: `invalid size "9999999999.5TiB": too large`},
		{in: "99999999999999999999", wantErr: `invalid size "99999999999999999999": too large`},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("ParseSize(%q) = %d, %v; want error %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseRetain(t *testing.T) {
	tests := []struct {
		in   string
		want Retain
		err  bool
	}{
		{in: "1h", want: Retain{Age: 3_600_000_000_000}},
		{in: "90m", want: Retain{Age: 5_400_000_000_000}},
		{in: "512MB", want: Retain{Bytes: 512e6}},
		{in: "0", want: Retain{}},
		{in: "-1h", err: true},
		{in: "1 day", err: true},
	}
	for _, tt := range tests {
		got, err := parseRetain(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("parseRetain(%q) = %+v, %v", tt.in, got, err)
		}
	}
}

// FuzzParseSize checks that sizes never panic or come out negative.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"64MB", "1.5GiB", "1e9", "-0", "9223372036854775807", "0.00001kB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := ParseSize(s); err == nil && n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
	})
}
