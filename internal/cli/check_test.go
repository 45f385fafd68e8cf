package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// pgfeed run --check passed files that pgfeed run then refused before
// connecting: sink and source types this version cannot build, an
// upper-case publication, a DSN that does not parse, avro on a line sink, a
// file sink whose folder is a file.
// Now both run the same checks: --check fails with the very line run
// prints.
func TestRunCheckRefusesWhatRunRefuses(t *testing.T) {
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", pg.Port)
	sourceMain := func(extra string) string {
		return fmt.Sprintf("[sources.main]\ndsn = %q\nslot = \"check_only\"\n%s\n", dsn, extra)
	}
	const stdoutSink = "[sinks.out]\ntype = \"stdout\"\nsources = [\"main\"]\n"
	cases := []struct {
		name, config, fragment string
	}{
		{"websocket sink in wal2json", "[http]\nlisten = \"127.0.0.1:0\"\n" + sourceMain("") + "[sinks.w]\ntype = \"websocket\"\nsources = [\"main\"]\nformat = \"wal2json\"\n",
			"sinks.w.format: websocket clients ack the commit_lsn of the frames they receive"},
		{"upper-case publication", sourceMain("publication = \"MyPub\"") + stdoutSink,
			`invalid publication name "MyPub"`},
		{"DSN that does not parse", "[sources.main]\ndsn = \"host=127.0.0.1 port=notanumber\"\nslot = \"check_only\"\n" + stdoutSink,
			"sources.main: invalid DSN"},
		{"avro on a stdout sink", sourceMain("") + "[sinks.f]\ntype = \"stdout\"\nsources = [\"main\"]\nformat = \"avro\"\n",
			"sinks.f.format: avro is binary"},
		{"file sink path that is a file", sourceMain("") + "[sinks.f]\ntype = \"file\"\nsources = [\"main\"]\npath = \"{dir}/taken\"\n",
			"sinks.f.path: opening file sink: creating folder: mkdir {dir}/taken: not a directory"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "pgfeed.toml")
			cfg := "checkpoint = " + strconv.Quote(filepath.Join(dir, "cp"+strconv.Itoa(i)+".db")) + "\n" + strings.ReplaceAll(tc.config, "{dir}", dir)
			if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "taken"), []byte("a file, not a folder"), 0o644); err != nil {
				t.Fatal(err)
			}
			fragment := strings.ReplaceAll(tc.fragment, "{dir}", dir)
			code, stdout, checkErr := runCLI(t, "run", "--check", "--config", path)
			if code == 0 {
				t.Fatalf("run --check passed (%q), but run refuses the file", stdout)
			}
			expectOneLineError(t, code, checkErr, fragment)
			code, _, runErr := runCLI(t, "run", "--config", path)
			expectOneLineError(t, code, runErr, fragment)
			if runErr != checkErr {
				t.Errorf("run and run --check differ:\nrun:     %s--check: %s", runErr, checkErr)
			}
		})
	}
}
