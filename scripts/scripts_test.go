// Package scripts_test tests the shell scripts of scripts/.
package scripts_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeSetupPath returns a PATH holding only what setup.sh runs, with fake
// apt-get and sudo: redis-server and nats-server are missing, so setup.sh
// "installs" them. The fake apt-get records the policy-rc.d it saw during
// the install in seen, and fails the install when fail is set.
func fakeSetupPath(t *testing.T, policy, seen string, fail bool) string {
	t.Helper()
	dir := t.TempDir()
	for _, tool := range []string{"id", "tee", "chmod", "rm", "cp", "mv", "mktemp", "cat"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("no %s: %v", tool, err)
		}
		if err := os.Symlink(p, filepath.Join(dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	status := "0"
	if fail {
		status = "100"
	}
	apt := "#!/bin/sh\nif [ \"$1\" = install ]; then cat " + policy + " > " + seen + "; exit " + status + "; fi\nexit 0\n"
	sudo := "#!/bin/sh\nexec \"$@\"\n"
	for name, body := range map[string]string{"apt-get": apt, "sudo": sudo} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// scripts/setup.sh replaced the machine's own /usr/sbin/policy-rc.d and
// then deleted it. It now puts back the one that was there (content and
// mode), also when the install fails, and leaves none where none was.
func TestSetupKeepsPolicyRcD(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	const original = "#!/bin/sh\n# the administrator's own\nexit 0\n"
	for _, tc := range []struct {
		name          string
		existing      bool
		failInstall   bool
		wantExitError bool
	}{
		{"an existing file is put back", true, false, false},
		{"an existing file is put back when the install fails", true, true, true},
		{"no file is left where none was", false, false, false},
		{"no file is left where none was, install failing", false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			policy := filepath.Join(dir, "policy-rc.d")
			seen := filepath.Join(dir, "seen")
			if tc.existing {
				if err := os.WriteFile(policy, []byte(original), 0o750); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(bash, "setup.sh")
			cmd.Env = []string{"PATH=" + fakeSetupPath(t, policy, seen, tc.failInstall), "PGFEED_POLICY_RC_D=" + policy}
			out, err := cmd.CombinedOutput()
			if (err != nil) != tc.wantExitError {
				t.Fatalf("setup.sh: %v, want failure %v; output:\n%s", err, tc.wantExitError, out)
			}
			during, err := os.ReadFile(seen)
			if err != nil || !strings.Contains(string(during), "exit 101") {
				t.Errorf("during the install policy-rc.d was %q (%v), want the one that refuses to start services", during, err)
			}
			after, err := os.ReadFile(policy)
			switch {
			case tc.existing && (err != nil || string(after) != original):
				t.Errorf("after setup.sh policy-rc.d is %q (%v), want the original back", after, err)
			case !tc.existing && !os.IsNotExist(err):
				t.Errorf("after setup.sh policy-rc.d exists (%q, %v), want none as before", after, err)
			}
			if tc.existing {
				if fi, err := os.Stat(policy); err == nil && fi.Mode().Perm() != 0o750 {
					t.Errorf("mode %v, want the original 0750", fi.Mode().Perm())
				}
			}
			left, _ := filepath.Glob(filepath.Join(dir, "policy-rc.d.*"))
			if len(left) > 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

// bash scripts/demo.sh exited 1 after Ctrl-C (go run's exit code). Ctrl-C
// reaches every process of the terminal's foreground group, so the test
// sends SIGINT to the script's whole process group, as a terminal does,
// and expects exit code 0.
func TestDemoScriptCtrlC(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pgfeed and starts PostgreSQL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "demo.sh", "--rate", "20")
	cmd.Env = append(os.Environ(), "PGFEED_SKIP_SETUP=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	for n := 0; n < 5; n++ {
		if !lines.Scan() {
			_ = cmd.Wait()
			t.Fatalf("the demo stopped after %d lines: %v; stderr: %s", n, lines.Err(), stderr.String())
		}
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	go func() { // keep reading, so that the demo never blocks on stdout
		for lines.Scan() {
		}
	}()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("bash scripts/demo.sh after Ctrl-C: %v, want exit code 0; stderr: %s", err, stderr.String())
	}
}
