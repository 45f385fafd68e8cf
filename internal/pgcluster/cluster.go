// Package pgcluster runs a throwaway PostgreSQL server: initdb into a
// temporary folder, a free port on 127.0.0.1, wal_level=logical and the
// socket inside the data folder. Tests, `pgfeed demo` and `pgfeed bench`
// use it. As root it runs the server as the postgres OS user, because
// Postgres refuses to run as root.
package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Options tune a new cluster. The zero value gives a cluster fit for tests.
type Options struct {
	// BinDir holds initdb, pg_ctl and postgres. Empty: those of Version.
	BinDir string
	// Version is the PostgreSQL major version to run (see FindVersion).
	// Zero: FindBinDir's.
	Version int
	// Settings are extra postgresql.conf lines, name = value.
	Settings map[string]string
}

// Cluster is one running (or stopped) throwaway server.
type Cluster struct {
	BinDir  string
	DataDir string
	Port    int
	// osUser is the account the server runs as when we are root, else "".
	osUser string
}

// PasswordRole names a role whose members must log in with a password over
// TCP; everyone else is trusted. Tests use it for the wrong-password case.
const PasswordRole = "password_required"

// Start creates and starts a new cluster.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	bin := opts.BinDir
	if bin == "" {
		var err error
		if opts.Version != 0 {
			bin, err = FindVersion(opts.Version)
		} else {
			bin, err = FindBinDir()
		}
		if err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "pgfeed-pg-")
	if err != nil {
		return nil, fmt.Errorf("creating data folder: %w", err)
	}
	c := &Cluster{BinDir: bin, DataDir: dir}
	// Record who owns the cluster, so that Reap can remove it if this
	// process dies without cleaning up (a panicking test, a kill -9).
	if err := os.WriteFile(dir+ownerSuffix, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("recording the cluster's owner: %w", err)
	}
	if os.Geteuid() == 0 {
		c.osUser = "postgres"
		if err := chownTo(dir, c.osUser); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if err := c.initdb(ctx, opts.Settings); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

// FindBinDir locates PostgreSQL's server programs: $PGFEED_PG_BIN, then
// those of major version $PGFEED_PG_VERSION (FindVersion), then
// `pg_config --bindir`, then the newest /usr/lib/postgresql/*/bin, then $PATH.
func FindBinDir() (string, error) {
	if d := os.Getenv("PGFEED_PG_BIN"); d != "" {
		return d, nil
	}
	if v := os.Getenv("PGFEED_PG_VERSION"); v != "" {
		major, err := strconv.Atoi(v)
		if err != nil {
			return "", fmt.Errorf("PGFEED_PG_VERSION=%q: want a major version such as 17", v)
		}
		return FindVersion(major)
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		d := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(matches, func(i, j int) bool { return versionOf(matches[i]) > versionOf(matches[j]) })
	if len(matches) > 0 {
		return filepath.Dir(matches[0]), nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("PostgreSQL server programs (initdb, pg_ctl) not found: install them (apt-get install -y postgresql) or set PGFEED_PG_BIN")
}

func versionOf(initdbPath string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdbPath))))
	return v
}

func chownTo(path, osUser string) error {
	u, err := user.Lookup(osUser)
	if err != nil {
		return fmt.Errorf("looking up OS user %q to run PostgreSQL as (needed when running as root): %w", osUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(path, uid, gid); err != nil {
		return fmt.Errorf("handing %s to %s: %w", path, osUser, err)
	}
	return nil
}

// command runs one of the server programs, as the postgres user when root.
func (c *Cluster) command(ctx context.Context, prog string, args ...string) *exec.Cmd {
	path := filepath.Join(c.BinDir, prog)
	if c.osUser != "" {
		return exec.CommandContext(ctx, "runuser", append([]string{"-u", c.osUser, "--", path}, args...)...)
	}
	return exec.CommandContext(ctx, path, args...)
}

func (c *Cluster) run(ctx context.Context, prog string, args ...string) error {
	out, err := c.command(ctx, prog, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("running %s %s: %w: %s", prog, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (c *Cluster) initdb(ctx context.Context, extra map[string]string) error {
	if err := c.run(ctx, "initdb", "-D", c.DataDir, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	c.Port = port
	settings := map[string]string{
		"port":                    strconv.Itoa(port),
		"listen_addresses":        "'127.0.0.1'",
		"unix_socket_directories": "'" + c.DataDir + "'",
		"wal_level":               "logical",
		"max_replication_slots":   "100",
		"max_wal_senders":         "40",
		"max_connections":         "120",
		// A throwaway server: no fsync, so tests run fast. Process crashes
		// (kill -9) lose nothing without fsync; only a machine crash would.
		"fsync":              "off",
		"full_page_writes":   "off",
		"synchronous_commit": "on",
		"shared_buffers":     "128MB",
		"max_wal_size":       "2GB",
		"log_min_messages":   "warning",
		"logging_collector":  "off",
	}
	for k, v := range extra {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var conf strings.Builder
	conf.WriteString("\n# pgfeed throwaway cluster\n")
	for _, k := range keys {
		fmt.Fprintf(&conf, "%s = %s\n", k, settings[k])
	}
	if err := appendFile(filepath.Join(c.DataDir, "postgresql.conf"), conf.String()); err != nil {
		return err
	}
	hba := "local all all trust\n" +
		"host all +" + PasswordRole + " 127.0.0.1/32 scram-sha-256\n" +
		"host replication +" + PasswordRole + " 127.0.0.1/32 scram-sha-256\n" +
		"host all all 127.0.0.1/32 trust\n" +
		"host replication all 127.0.0.1/32 trust\n"
	return os.WriteFile(filepath.Join(c.DataDir, "pg_hba.conf"), []byte(hba), 0o600)
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// DSN returns a keyword/value connection string for the superuser and the
// given database ("postgres" when empty).
func (c *Cluster) DSN(dbname string) string {
	if dbname == "" {
		dbname = "postgres"
	}
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=%s sslmode=disable", c.Port, dbname)
}

// URL returns the same connection as a postgres:// URL.
func (c *Cluster) URL(dbname string) string {
	if dbname == "" {
		dbname = "postgres"
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, dbname)
}

// Start starts a stopped cluster and waits until it accepts connections.
func (c *Cluster) Start(ctx context.Context) error {
	logFile := filepath.Join(c.DataDir, "server.log")
	if err := c.run(ctx, "pg_ctl", "-D", c.DataDir, "-l", logFile, "-w", "-t", "120", "start"); err != nil {
		return fmt.Errorf("%w\nserver log:\n%s", err, tail(logFile, 20))
	}
	return nil
}

// Stop shuts the server down: mode is "smart", "fast" or "immediate".
func (c *Cluster) Stop(ctx context.Context, mode string) error {
	return c.run(ctx, "pg_ctl", "-D", c.DataDir, "-m", mode, "-w", "-t", "120", "stop")
}

// Restart stops the server in the given mode and starts it again.
func (c *Cluster) Restart(ctx context.Context, mode string) error {
	if err := c.Stop(ctx, mode); err != nil {
		return err
	}
	return c.Start(ctx)
}

// Kill9 kills the postmaster and all its children with SIGKILL, the way a
// crashed machine process would die, and waits until they are gone. Start
// brings the server back through crash recovery.
func (c *Cluster) Kill9() error {
	pid, err := c.postmasterPID()
	if err != nil {
		return err
	}
	children := childrenOf(pid)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for _, p := range children {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range append(children, pid) {
		for syscall.Kill(p, 0) == nil && !isZombie(p) {
			if time.Now().After(deadline) {
				return fmt.Errorf("server process %d still alive after SIGKILL", p)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// A killed postmaster may linger as a zombie until its parent reaps it,
	// and a new postmaster would take the stale lock files for a live server.
	// Every process is dead, so the locks are ours to remove.
	for _, name := range []string{"postmaster.pid", fmt.Sprintf(".s.PGSQL.%d.lock", c.Port)} {
		if err := os.Remove(filepath.Join(c.DataDir, name)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("removing stale lock file: %w", err)
		}
	}
	return nil
}

func (c *Cluster) postmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(c.DataDir, "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("reading postmaster.pid: %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	return strconv.Atoi(strings.TrimSpace(first))
}

// childrenOf lists the processes whose parent is pid, from /proc.
func childrenOf(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var kids []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _ := parentOf(p); ppid == pid {
			kids = append(kids, p)
		}
	}
	return kids
}

func parentOf(pid int) (int, string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, ""
	}
	// The command name is in parentheses and may hold spaces; fields follow the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, ""
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid, f[0]
}

func isZombie(pid int) bool {
	_, state := parentOf(pid)
	return state == "Z" || state == ""
}

// Remove stops the server (immediately: its data is thrown away) and deletes
// the data folder.
func (c *Cluster) Remove() error {
	if _, err := os.Stat(filepath.Join(c.DataDir, "postmaster.pid")); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Stop(ctx, "immediate"); err != nil {
			_ = c.Kill9()
		}
	}
	os.Remove(c.DataDir + ownerSuffix)
	return os.RemoveAll(c.DataDir)
}

// ownerSuffix names the file beside a data folder that holds the PID of
// the process that started the cluster.
const ownerSuffix = ".owner"

// Reap stops and removes the throwaway clusters whose owning process is
// gone. Tests call it before starting their own, so that a run that died
// without cleaning up leaves no server behind for long.
func Reap() {
	owners, _ := filepath.Glob(filepath.Join(os.TempDir(), "pgfeed-pg-*"+ownerSuffix))
	for _, owner := range owners {
		b, err := os.ReadFile(owner)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || syscall.Kill(pid, 0) == nil {
			continue // still alive (or not ours to judge)
		}
		dir := strings.TrimSuffix(owner, ownerSuffix)
		c := &Cluster{DataDir: dir}
		if _, err := os.Stat(filepath.Join(dir, "postmaster.pid")); err == nil {
			_ = c.Kill9()
		}
		os.RemoveAll(dir)
		os.Remove(owner)
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
