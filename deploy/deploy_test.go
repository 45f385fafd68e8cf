package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// pgfeed is built once, the way the Dockerfile builds it.
var pgfeed string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "pgfeed-deploy-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	pgfeed = filepath.Join(dir, "pgfeed")
	return m.Run()
}

// dockerLdflags is the -ldflags of the Dockerfile's go build, with its
// build arguments filled in.
func dockerLdflags(t *testing.T, version, commit string) string {
	t.Helper()
	df := readFile(t, "Dockerfile")
	m := regexp.MustCompile(`-ldflags "([^"]+)"`).FindStringSubmatch(df)
	if m == nil {
		t.Fatal("Dockerfile: no go build -ldflags")
	}
	return strings.NewReplacer("${VERSION}", version, "${COMMIT}", commit).Replace(m[1])
}

// build builds pgfeed with the Dockerfile's flags (once per run).
func build(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(pgfeed); err == nil {
		return
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", dockerLdflags(t, "v0.0.0-test", "0123456789abcdef0123456789abcdef01234567"), "-o", pgfeed, "github.com/pgfeed/pgfeed/cmd/pgfeed")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building pgfeed as the Dockerfile does: %v\n%s", err, out)
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkArgs runs pgfeed with args and --help: cobra refuses an unknown
// command or flag even then, so a rename in the CLI breaks this test
// rather than a deployment.
func checkArgs(t *testing.T, where string, args []string) {
	t.Helper()
	out, err := exec.Command(pgfeed, append(args, "--help")...).CombinedOutput()
	if err != nil {
		t.Errorf("%s: pgfeed %s: %v\n%s", where, strings.Join(args, " "), err, out)
	}
}

// The version and commit passed as build arguments reach pgfeed version.
func TestDockerfileBuild(t *testing.T) {
	build(t)
	out, err := exec.Command(pgfeed, "version", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Version, Commit string }
	if err := json.Unmarshal(out, &v); err != nil || v.Version != "v0.0.0-test" || v.Commit != "0123456789abcdef0123456789abcdef01234567" {
		t.Fatalf("version of the Dockerfile's build: %s (%v)", out, err)
	}
	df := readFile(t, "Dockerfile")
	for _, want := range []string{"CGO_ENABLED=0", "./cmd/pgfeed", "USER 65532:65532", `ENTRYPOINT ["/usr/local/bin/pgfeed"]`} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	m := regexp.MustCompile(`(?m)^CMD (\[.*\])$`).FindStringSubmatch(df)
	var cmd []string
	if m == nil || json.Unmarshal([]byte(m[1]), &cmd) != nil {
		t.Fatal("Dockerfile: no CMD in JSON form")
	}
	checkArgs(t, "Dockerfile CMD", cmd)
}

// The image itself is built and run only where a Docker engine answers.
func TestDockerImage(t *testing.T) {
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skip("no Docker engine here (docker info failed): the image is not built; TestDockerfileBuild checks the Dockerfile's build")
	}
	tag := "pgfeed-deploy-test"
	b := exec.Command("docker", "build", "-f", "deploy/Dockerfile", "--build-arg", "VERSION=v0.0.0-image", "-t", tag, ".")
	b.Dir = ".."
	if out, err := b.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	defer exec.Command("docker", "rmi", "-f", tag).Run()
	out, err := exec.Command("docker", "run", "--rm", tag, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "pgfeed v0.0.0-image") {
		t.Fatalf("docker run %s version: %v\n%s", tag, err, out)
	}
}

// The unit's commands are ones pgfeed takes, and systemd-analyze verify
// (where installed) finds nothing to say about the unit.
func TestSystemdUnit(t *testing.T) {
	build(t)
	unit := readFile(t, "pgfeed.service")
	const binPath = "/usr/local/bin/pgfeed"
	execs := 0
	sc := bufio.NewScanner(strings.NewReader(unit))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), "=")
		if !ok || (key != "ExecStart" && key != "ExecStartPre") {
			continue
		}
		f := strings.Fields(value)
		if len(f) == 0 || f[0] != binPath {
			t.Fatalf("%s runs %q, want %s", key, value, binPath)
		}
		checkArgs(t, key, f[1:])
		execs++
	}
	if execs != 2 {
		t.Errorf("%d ExecStart/ExecStartPre lines, want 2", execs)
	}
	for _, want := range []string{"RestartPreventExitStatus=3", "KillSignal=SIGTERM", "StateDirectory=pgfeed", "WorkingDirectory=/var/lib/pgfeed"} {
		if !strings.Contains(unit, want+"\n") {
			t.Errorf("unit lacks %s", want)
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed: the unit's syntax is not verified")
	}
	// verify wants the executables to exist: point the unit at the one
	// just built.
	path := filepath.Join(t.TempDir(), "pgfeed.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(unit, binPath, pgfeed)), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(analyze, "verify", "--man=no", path)
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	// systemd-analyze exits 0 on some problems (an unknown Type=), and may
	// speak of other units of the machine: every line about ours fails.
	var problems []string
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, "pgfeed.service") {
			problems = append(problems, line)
		}
	}
	if err != nil || len(problems) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out.String())
	}
}
