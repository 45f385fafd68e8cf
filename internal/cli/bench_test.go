package cli

import (
	"encoding/json"
	"os/exec"
	"testing"

	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// bench --json prints one JSON object with every client's rate and ratio
// (throughput), or each client's latency percentiles (--latency), measured
// on a real server against pg_recvlogical. Only the presence and sanity of
// the figures is checked, never their size.
func TestBenchJSON(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "benchjson")
	out, err := exec.Command(bin, "bench", "--dsn", dsn, "--rows", "2000", "--txn-size", "100", "--rounds", "1", "--json").Output()
	if err != nil {
		t.Fatalf("bench --json: %v\n%s", err, stderrOf(err))
	}
	var tp throughputResult
	if err := json.Unmarshal(out, &tp); err != nil {
		t.Fatalf("bench --json printed no JSON object: %v\n%s", err, out)
	}
	if tp.Changes < 2000 || tp.Rounds != 1 {
		t.Errorf("changes %d, rounds %d", tp.Changes, tp.Rounds)
	}
	for _, name := range []string{"server decode", "pg_recvlogical", "pgfeed stream", "run discard", "run file"} {
		if tp.Rates[name] <= 0 {
			t.Errorf("rate of %q: %v (have %v)", name, tp.Rates[name], tp.Rates)
		}
		if r := tp.Ratios[name]; name != "server decode" && (r.PgRecvlogical <= 0 || r.ServerDecode <= 0) {
			t.Errorf("ratios of %q: %+v", name, r)
		}
	}
	if r := tp.Ratios["run file"]; r.RunDiscard <= 0 {
		t.Errorf("run file has no ratio to run discard: %+v", r)
	}

	out, err = exec.Command(bin, "bench", "--dsn", dsn, "--latency", "--latency-rate", "200", "--latency-for", "2s", "--json").Output()
	if err != nil {
		t.Fatalf("bench --latency --json: %v\n%s", err, stderrOf(err))
	}
	var lat latencyResult
	if err := json.Unmarshal(out, &lat); err != nil {
		t.Fatalf("bench --latency --json printed no JSON object: %v\n%s", err, out)
	}
	if lat.Transactions == 0 || lat.Rate <= 0 {
		t.Errorf("transactions %d at %v/s", lat.Transactions, lat.Rate)
	}
	for _, name := range []string{"pg_recvlogical", "pgfeed stream"} {
		f := lat.Clients[name]
		if f.Lines == 0 || f.P50 <= 0 || f.P99 < f.P50 || f.Max < f.P99 {
			t.Errorf("latency of %q: %+v", name, f)
		}
	}
	if lat.Ratios.P50 <= 0 || lat.Ratios.P99 <= 0 {
		t.Errorf("latency ratios: %+v", lat.Ratios)
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
