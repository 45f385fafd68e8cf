package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"

	"github.com/pgfeed/pgfeed/config"
	"github.com/spf13/cobra"
)

// logFlags are --log-format and --log-level, shared by every command.
type logFlags struct {
	format    string // "text" or "json"
	level     string // "" for the command's default
	formatSet bool   // --log-format was given (it then overrides [log] format)
	mu        sync.Mutex
	// runLevel is the level of the run logger, which the admin API's
	// /debug/on and /debug/off change while it runs.
	runLevel slog.LevelVar
}

func (f *logFlags) register(root *cobra.Command) {
	root.PersistentFlags().StringVar(&f.format, "log-format", "text", `log lines on stderr as "text" (human-readable) or "json" (one JSON object per line: time, level, msg and fields)`)
	root.PersistentFlags().StringVar(&f.level, "log-level", "", `least severe log level shown: debug, info, warn or error (default: run and replay take [log] level, info; other commands warn)`)
}

// check validates the flags, before any command runs.
func (f *logFlags) check(cmd *cobra.Command) error {
	f.formatSet = cmd.Flags().Changed("log-format")
	switch f.format {
	case "text", "json":
	default:
		return fmt.Errorf("--log-format %q: use text or json", f.format)
	}
	if f.level != "" {
		if _, err := parseLevel(f.level); err != nil {
			return err
		}
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: use debug, info, warn or error", s)
	}
	return l, nil
}

// json reports whether log lines (and the final error line) are JSON.
func (f *logFlags) json() bool { return f.format == "json" }

// logger is the logger of a command other than run: warnings and errors
// unless --log-level says otherwise; in text format each record is one
// "pgfeed: " line, like the command's other messages.
func (e *env) logger() *slog.Logger {
	level := slog.LevelWarn
	if e.logs.level != "" {
		level, _ = parseLevel(e.logs.level) // checked before the command ran
	}
	w := e.logs.writer(e.stderr)
	if e.logs.json() {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
	}
	return slog.New(&lineHandler{w: w, level: level})
}

// writer is w for loggers: every logger of a command writes through one
// lock, so that records of two goroutines never interleave.
func (f *logFlags) writer(w io.Writer) io.Writer { return &lockedWriter{mu: &f.mu, w: w} }

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// warnf writes a warning: "pgfeed: MESSAGE" in text format, a JSON record
// in json format.
func (e *env) warnf(format string, args ...any) {
	e.logger().Warn(fmt.Sprintf(format, args...))
}

// runLogger is the logger of run and replay: the config's [log] section,
// with --log-format and --log-level taking precedence when given.
func (e *env) runLogger(l config.Log) *slog.Logger {
	if e.logs.formatSet {
		l.Format = e.logs.format
	}
	if e.logs.level != "" {
		l.Level, _ = parseLevel(e.logs.level)
	}
	return newLogger(e, l)
}

// printError writes the line a failed command ends with: "pgfeed: LINE",
// or in json format a record of level ERROR.
func (e *env) printError(line string) {
	if e.logs.json() {
		slog.New(slog.NewJSONHandler(e.logs.writer(e.stderr), nil)).Error(line)
		return
	}
	fmt.Fprintln(e.stderr, "pgfeed: "+line)
}

// lineHandler writes each record as one line: "pgfeed: msg key=value ...".
// It is slog's text format without time and level, for commands whose
// other messages are plain lines.
type lineHandler struct {
	w     io.Writer
	level slog.Level
	attrs string // preformatted " key=value" of WithAttrs
	group string // prefix of WithGroup, "g."
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString("pgfeed: ")
	b.WriteString(r.Message)
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		appendAttr(&b, h.group, a)
		return true
	})
	b.WriteByte('\n')
	_, err := io.WriteString(h.w, b.String()) // one Write: the writer locks it
	return err
}

func (h *lineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	for _, a := range as {
		appendAttr(&b, h.group, a)
	}
	c := *h
	c.attrs += b.String()
	return &c
}

func (h *lineHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.group += name + "."
	return &c
}

func appendAttr(b *strings.Builder, prefix string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		for _, g := range a.Value.Group() {
			appendAttr(b, prefix+a.Key+".", g)
		}
		return
	}
	v := a.Value.String()
	if v == "" || strings.ContainsAny(v, " \t\n\"=") {
		v = strconv.Quote(v)
	}
	fmt.Fprintf(b, " %s%s=%s", prefix, a.Key, v)
}
