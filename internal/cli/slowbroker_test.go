package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// stallProxy forwards TCP connections to a server until it is paused:
// then it stops passing bytes either way (it reads one buffer more and
// holds it), so the peers' socket buffers fill and their writes block, as
// with a broker that stalls. Resume passes everything held on, in order.
type stallProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	cond   *sync.Cond
	paused bool
	conns  []net.Conn
}

func startStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target}
	p.cond = sync.NewCond(&p.mu)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *stallProxy) Addr() string { return p.ln.Addr().String() }

func (p *stallProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

func (p *stallProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.paused {
				p.cond.Wait()
			}
			p.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *stallProxy) Pause() { p.mu.Lock(); p.paused = true; p.mu.Unlock() }

func (p *stallProxy) Resume() {
	p.mu.Lock()
	p.paused = false
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *stallProxy) close() {
	p.ln.Close()
	p.Resume()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// heapInUse reads the Go heap in use of a running pgfeed from its
// /metrics (the Go collector's go_memstats_heap_inuse_bytes).
func heapInUse(listen string) (int64, error) {
	resp, err := http.Get("http://" + listen + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return int64(f), err
		}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return 0, errors.New("no go_memstats_heap_inuse_bytes in /metrics")
}

// vmRSS reads the resident set of a process from /proc, in bytes.
func vmRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// NATS and Redis both stall (a proxy in front of each stops passing
// bytes) while writers go on and a bulk load writes far more change data
// than the bound: pgfeed's Go heap stays under the bound (backpressure
// holds the changes in Postgres's WAL, not in pgfeed), and once the
// brokers move again every change arrives (the state invariant in both).
func TestRunSlowBrokersBoundedMemory(t *testing.T) {
	const (
		rows     = 10_000
		rowBytes = 8000
		bound    = 64 << 20 // Go heap in use; the stall writes 80 MB of rows
	)
	b := startBrokerRun(t, "slowbrokers")
	natsProxy, redisProxy := startStallProxy(t, b.nats.Addr), startStallProxy(t, b.redis.Addr)
	cfg, err := os.ReadFile(b.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	listen := freeAddr(t)
	body := strings.Replace(string(cfg), b.nats.URL(), "nats://"+natsProxy.Addr(), 1)
	body = strings.Replace(body, fmt.Sprintf("addr = %q", b.redis.Addr), fmt.Sprintf("addr = %q", redisProxy.Addr()), 1)
	body += fmt.Sprintf("[http]\nlisten = %q\n", listen)
	if err := os.WriteFile(b.cfgPath, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd, stderr := startProcess(t, os.DevNull, "run", "--config", b.cfgPath)
	waitForHTTP(t, listen)
	time.Sleep(time.Second) // some changes flow before the stall

	natsProxy.Pause()
	redisProxy.Pause()
	var peakHeap, peakRSS int64
	sample := func() {
		if h, err := heapInUse(listen); err == nil {
			peakHeap = max(peakHeap, h)
		}
		peakRSS = max(peakRSS, vmRSS(cmd.Process.Pid))
	}
	for i := 1000; i < 1000+rows; i += 1000 {
		pgtest.Exec(t, b.db, fmt.Sprintf("INSERT INTO items SELECT g, g, repeat('x', %d) FROM generate_series(%d, %d) g", rowBytes, i, i+999))
		sample()
	}
	for range 20 { // pgfeed reads and tries to write for a while longer
		time.Sleep(200 * time.Millisecond)
		sample()
	}
	natsProxy.Resume()
	redisProxy.Resume()
	b.stopWriters()
	b.stop(cmd)
	b.check()
	if peakHeap == 0 {
		t.Fatal("no heap sample read from /metrics")
	}
	if peakHeap > bound {
		t.Fatalf("Go heap in use peaked at %d MiB during the stall; bound %d MiB (stall wrote %d MiB of rows)", peakHeap>>20, bound>>20, rows*rowBytes>>20)
	}
	t.Logf("during the stall: heap in use peak %d MiB, VmRSS peak %d MiB (race-built binary), %d MiB of rows written; retries logged: %v",
		peakHeap>>20, peakRSS>>20, rows*rowBytes>>20, strings.Contains(stderr.String(), "retrying"))
}

// waitForHTTP waits until something answers HTTP at listen.
func waitForHTTP(t *testing.T, listen string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for ctx.Err() == nil {
		if _, err := heapInUse(listen); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("pgfeed's /metrics never answered at %s", listen)
}
