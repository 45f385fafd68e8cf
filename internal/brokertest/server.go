package brokertest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is one server process that a test owns.
type Server struct {
	// Addr is the host:port the server listens on; it stays the same when
	// the server is stopped and started again.
	Addr string
	// Dir holds the server's data (and its log).
	Dir string

	t     testing.TB
	name  string
	args  func(port int) []string
	ready func(addr string) error

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	log    *os.File
}

// lookPath finds a server binary, failing (under CI) or skipping the test
// when it is missing. Debian installs nats-server in /usr/sbin, which is not
// on every PATH.
func lookPath(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	msg := fmt.Sprintf("%s not found: run scripts/setup.sh (or apt-get install %s)", name, name)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// FreePort returns a TCP port of 127.0.0.1 that nothing listened on a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// StartRedis starts redis-server on a free port with its data in a
// temporary folder, with persistence off unless extra arguments say
// otherwise (e.g. "--appendonly", "yes").
func StartRedis(t testing.TB, extra ...string) *Server {
	t.Helper()
	bin := lookPath(t, "redis-server")
	s := &Server{t: t, name: "redis-server", Dir: t.TempDir()}
	s.args = func(port int) []string {
		args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", s.Dir, "--daemonize", "no", "--protected-mode", "no"}
		return append(args, extra...)
	}
	s.ready = redisReady
	s.boot(bin)
	return s
}

// StartNATS starts nats-server with JetStream on a free port, its store in
// a temporary folder. Extra arguments are passed on (e.g. "--user", "u").
func StartNATS(t testing.TB, extra ...string) *Server {
	t.Helper()
	bin := lookPath(t, "nats-server")
	s := &Server{t: t, name: "nats-server", Dir: t.TempDir()}
	s.args = func(port int) []string {
		args := []string{"-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", filepath.Join(s.Dir, "js"), "-m", "0"}
		return append(args, extra...)
	}
	s.ready = natsReady
	s.boot(bin)
	return s
}

// URL returns the server's address as a nats:// URL.
func (s *Server) URL() string { return "nats://" + s.Addr }

func (s *Server) boot(bin string) {
	t := s.t
	t.Helper()
	var lastErr error
	// A free port can be taken by another process before the server binds
	// it: try a few.
	for range 5 {
		port := FreePort(t)
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if lastErr = s.start(bin); lastErr == nil {
			t.Cleanup(s.Stop)
			return
		}
	}
	t.Fatalf("starting %s: %v", s.name, lastErr)
}

func (s *Server) start(bin string) error {
	_, port, _ := net.SplitHostPort(s.Addr)
	p, _ := strconv.Atoi(port)
	log, err := os.OpenFile(filepath.Join(s.Dir, s.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, s.args(p)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive a killed test
	if err := cmd.Start(); err != nil {
		log.Close()
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := s.ready(s.Addr)
		if err == nil {
			break
		}
		select {
		case <-exited:
			log.Close()
			return fmt.Errorf("%s exited: %s", s.name, tail(filepath.Join(s.Dir, s.name+".log")))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			log.Close()
			return fmt.Errorf("%s not ready on %s: %v", s.name, s.Addr, err)
		}
	}
	s.mu.Lock()
	s.cmd, s.exited, s.log = cmd, exited, log
	s.mu.Unlock()
	return nil
}

// Stop stops the server with SIGTERM (redis writes its append-only file,
// nats its store) and waits until it has exited. Stopping a stopped server
// does nothing.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill stops the server with SIGKILL.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd, exited, log := s.cmd, s.exited, s.log
	s.cmd, s.exited, s.log = nil, nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	log.Close()
}

// Restart starts a stopped server again on the same port and data.
func (s *Server) Restart() {
	s.t.Helper()
	bin := lookPath(s.t, s.name)
	var err error
	for range 50 { // the port may linger a moment after the old process
		if err = s.start(bin); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("restarting %s: %v", s.name, err)
}

func redisReady(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") && !strings.HasPrefix(line, "-NOAUTH") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

func natsReady(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "INFO ") {
		return fmt.Errorf("server said %q", strings.TrimSpace(line))
	}
	return nil
}

// tail returns the end of a log file, for an error message.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}
