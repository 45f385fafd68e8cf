package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// chromium returns the headless browser's path; a missing one skips the
// test, or fails it under CI=true.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (scripts/setup.sh installs it); CI=true needs it")
	}
	t.Skip("chromium is not installed: run scripts/setup.sh to test the status page in a browser")
	return ""
}

var (
	tbodyRE = regexp.MustCompile(`(?s)<tbody>(.*?)</tbody>`)
	trRE    = regexp.MustCompile(`(?s)<tr>(.*?)</tr>`)
	tdRE    = regexp.MustCompile(`(?s)<td[^>]*>(.*?)</td>`)
)

// tableRows returns the text of the body cells of the table with that id
// in a DOM serialized by chromium.
func tableRows(t *testing.T, dom, id string) [][]string {
	t.Helper()
	i := strings.Index(dom, `<table id="`+id+`">`)
	if i < 0 {
		t.Fatalf("no table %q in the page:\n%s", id, dom)
	}
	m := tbodyRE.FindStringSubmatch(dom[i:])
	if m == nil {
		t.Fatalf("table %q has no body:\n%s", id, dom)
	}
	var rows [][]string
	for _, tr := range trRE.FindAllStringSubmatch(m[1], -1) {
		var row []string
		for _, td := range tdRE.FindAllStringSubmatch(tr[1], -1) {
			row = append(row, html.UnescapeString(td[1]))
		}
		rows = append(rows, row)
	}
	return rows
}

// The status page at / of a running pipeline, loaded by headless Chromium
// so that its script runs: it shows the source, its slot with the
// confirmed LSN and retained WAL, and the sink with its event count.
func TestHTTPStatusPageInBrowser(t *testing.T) {
	browser := chromium(t)
	dsn := pgtest.CreateDB(t, pg, "statuspage")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, v text)")
	dir := t.TempDir()
	addr := freeAddr(t)
	base := "http://" + addr
	path := filepath.Join(dir, "pgfeed.toml")
	writeConfig(t, path, fmt.Sprintf(`checkpoint = %q
[http]
listen = %q
[sources.main]
dsn = %q
slot = "statuspage"
create = true
tables = ["public.items"]
[sinks.files]
type = "file"
path = %q
sources = ["main"]
`, filepath.Join(dir, "pgfeed.db"), addr, dsn, filepath.Join(dir, "out")))
	cmd, stderr := startProcess(t, os.DevNull, "run", "--config", path)
	waitUntil(t, "/status 200", func() bool {
		code, _, err := httpGet(base + "/status")
		return err == nil && code == 200
	})
	pgtest.Exec(t, db, "INSERT INTO items SELECT g, 'row ' || g FROM generate_series(1, 100) g")

	type stats struct {
		Sources []struct {
			Name      string    `json:"name"`
			Confirmed event.LSN `json:"confirmed_lsn"`
			Slot      *struct {
				Slot string `json:"slot"`
			} `json:"slot"`
		} `json:"sources"`
		Sinks []struct {
			Name   string `json:"name"`
			Events uint64 `json:"events"`
		} `json:"sinks"`
	}
	var before stats
	waitUntil(t, "the 100 rows in the sink, and the slot's health", func() bool {
		_, body, err := httpGet(base + "/stats")
		if err != nil {
			return false
		}
		if err := json.Unmarshal([]byte(body), &before); err != nil {
			t.Fatalf("/stats: %v\n%s", err, body)
		}
		return len(before.Sinks) == 1 && before.Sinks[0].Events >= 100 &&
			len(before.Sources) == 1 && before.Sources[0].Slot != nil && before.Sources[0].Confirmed != 0
	})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	shot := filepath.Join(dir, "status.png")
	out, err := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu",
		"--user-data-dir="+filepath.Join(dir, "chromium"), "--virtual-time-budget=3000", "--dump-dom", base+"/").Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	dom := string(out)
	if strings.Contains(dom, "loading…") {
		t.Fatalf("the page's script did not run:\n%s", dom)
	}

	sources := tableRows(t, dom, "sources")
	if len(sources) != 1 || sources[0][0] != "main" || sources[0][1] != "yes" {
		t.Errorf("sources table: %q, want one streaming row for main", sources)
	}
	slots := tableRows(t, dom, "slots")
	if len(slots) != 1 || len(slots[0]) < 6 || slots[0][0] != "main" || slots[0][1] != "statuspage" {
		t.Fatalf("slots table: %q, want the slot statuspage of main", slots)
	}
	confirmed, err := event.ParseLSN(slots[0][3])
	if err != nil || confirmed < before.Sources[0].Confirmed {
		t.Errorf("slot confirmed LSN on the page %q (%v), want at least %s as /stats had before", slots[0][3], err, before.Sources[0].Confirmed)
	}
	if slots[0][5] == "" {
		t.Errorf("slot wal_status empty on the page: %q", slots[0])
	}
	sinks := tableRows(t, dom, "sinks")
	if len(sinks) != 1 || sinks[0][0] != "files" {
		t.Fatalf("sinks table: %q, want the sink files", sinks)
	}
	if n, err := strconv.ParseUint(sinks[0][1], 10, 64); err != nil || n < before.Sinks[0].Events {
		t.Errorf("sink events on the page %q, want at least %d", sinks[0][1], before.Sinks[0].Events)
	}
	if clients := tableRows(t, dom, "clients"); len(clients) != 1 || clients[0][0] != "none" {
		t.Errorf("clients table: %q, want none", clients)
	}

	// A screenshot for whoever looks at the page by eye (not checked).
	if err := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
		"--user-data-dir="+filepath.Join(dir, "chromium"), "--virtual-time-budget=3000", "--window-size=1100,700",
		"--screenshot="+shot, base+"/").Run(); err != nil {
		t.Logf("chromium --screenshot: %v", err)
	} else if os.Getenv("PGFEED_UPDATE_SCREENSHOT") != "" {
		if b, err := os.ReadFile(shot); err == nil {
			_ = os.WriteFile(filepath.Join("testdata", "statuspage.png"), b, 0o644)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
}
