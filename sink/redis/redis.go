package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/sink"
)

// Mode is where a sink writes.
type Mode int

// Modes.
const (
	Stream  Mode = iota // XADD to streams
	Channel             // PUBLISH to channels: at-most-once
)

// Fields of every stream entry.
const (
	FieldID    = "id"    // the event's identity (sink.Identity)
	FieldKey   = "key"   // the encoded primary key; absent when the table has none
	FieldValue = "value" // the encoded event
)

// DefaultMarkSuffix follows a stream's name to name the hash of its marks.
const DefaultMarkSuffix = ":pgfeed-marks"

// DefaultTimeout bounds connecting and each round trip when
// Options.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("redis sink is closed")

// Options configure a Sink. Only Addr is required; the zero value of the
// rest appends to streams, idempotently, without trimming.
type Options struct {
	Addr     string // host:port
	Username string // for Redis 6 ACLs; empty: the default user
	Password string
	DB       int
	TLS      *tls.Config // when not nil, connect with TLS

	Mode Mode
	// MaxLen trims each stream to about this many entries (XADD MAXLEN ~);
	// 0 never trims.
	MaxLen int64
	// NotIdempotent appends with plain pipelined XADDs: faster, but a batch
	// redelivered after a crash is appended again (at-least-once with
	// duplicates). It has no effect on channels.
	NotIdempotent bool
	// MarkSuffix names a stream's marks hash (stream name + suffix);
	// DefaultMarkSuffix when empty.
	MarkSuffix string

	// Timeout bounds connecting and each round trip (DefaultTimeout when
	// zero).
	Timeout time.Duration
	// Logger gets a line when redelivered records are skipped; nil
	// discards it.
	Logger *slog.Logger
}

// Sink writes records to Redis. It is safe for concurrent use; writes are
// serialized.
type Sink struct {
	opts   Options
	client *goredis.Client
	log    *slog.Logger

	mu     sync.Mutex
	closed bool
}

var _ sink.Sink = (*Sink)(nil)

// Open connects to Redis and checks that it answers (PING), so that a
// wrong address, password or db fails here with one line.
func Open(ctx context.Context, opts Options) (*Sink, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MarkSuffix == "" {
		opts.MarkSuffix = DefaultMarkSuffix
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	quietOnce.Do(func() { goredis.SetLogger(quiet{}) })
	client := goredis.NewClient(&goredis.Options{
		Addr:         opts.Addr,
		Username:     opts.Username,
		Password:     opts.Password,
		DB:           opts.DB,
		TLSConfig:    opts.TLS,
		DialTimeout:  opts.Timeout,
		ReadTimeout:  opts.Timeout,
		WriteTimeout: opts.Timeout,
		// The client must not resend a pipeline on its own: part of it may
		// have been applied, and plain XADDs would be appended twice
		// inside one successful Write. The pipeline retries failed batches.
		MaxRetries:            -1,
		ContextTimeoutEnabled: true,
		DisableIdentity:       true, // CLIENT SETINFO is Redis 7.2+
		PoolSize:              4,
		DialerRetries:         1, // the pipeline retries, with its own backoff
	})
	pctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	if err := client.Ping(pctx).Err(); err != nil {
		client.Close()
		return nil, connectError(opts, err)
	}
	return &Sink{opts: opts, client: client, log: log}, nil
}

// quiet silences go-redis's own logger, which is global and prints to
// stderr (a failed dial per attempt): every error it would print reaches
// the caller of Write or Open, which reports it once.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

var quietOnce sync.Once

func connectError(opts Options, err error) error {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "WRONGPASS") || strings.HasPrefix(msg, "NOAUTH") || strings.Contains(msg, "invalid password") || strings.Contains(msg, "invalid username-password"):
		return fmt.Errorf("connecting to Redis at %s: authentication failed (check username and password): %w", opts.Addr, err)
	case strings.Contains(msg, "DB index is out of range"):
		return fmt.Errorf("connecting to Redis at %s: db %d does not exist on this server (see its databases setting): %w", opts.Addr, opts.DB, err)
	case errors.Is(err, syscall.ECONNREFUSED) || isNetError(err):
		return fmt.Errorf("connecting to Redis at %s: no server reachable (is redis-server running there?): %w", opts.Addr, err)
	}
	return fmt.Errorf("connecting to Redis at %s: %w", opts.Addr, err)
}

func isNetError(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &oe) || errors.As(err, &ne)
}

// Write sends the batch in one pipelined round trip and returns once Redis
// has applied all of it. On error some records may have been written (a
// prefix of each stream's records); with idempotent streams their
// redelivery is skipped.
func (s *Sink) Write(ctx context.Context, batch []sink.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("writing to Redis: %w", err)
	}
	if len(batch) == 0 {
		return nil
	}
	switch {
	case s.opts.Mode == Channel:
		return s.publish(ctx, batch)
	case s.opts.NotIdempotent:
		return s.xadd(ctx, batch)
	}
	return s.xaddIdempotent(ctx, batch)
}

func (s *Sink) publish(ctx context.Context, batch []sink.Record) error {
	pipe := s.client.Pipeline()
	for i := range batch {
		pipe.Publish(ctx, batch[i].Topic, batch[i].Value)
	}
	cmds, err := pipe.Exec(ctx)
	return s.execError("publishing to channel", cmds, err)
}

func (s *Sink) xadd(ctx context.Context, batch []sink.Record) error {
	pipe := s.client.Pipeline()
	for i := range batch {
		r := &batch[i]
		values := []any{FieldID, sink.Identity(*r)}
		if len(r.Key) > 0 {
			values = append(values, FieldKey, r.Key)
		}
		values = append(values, FieldValue, r.Value)
		pipe.XAdd(ctx, &goredis.XAddArgs{Stream: r.Topic, MaxLen: s.opts.MaxLen, Approx: s.opts.MaxLen > 0, Values: values})
	}
	cmds, err := pipe.Exec(ctx)
	return s.execError("appending to stream", cmds, err)
}

// appendScript appends the records of one stream that are above their
// lane's mark, and moves the marks, atomically.
//
// KEYS[1] is the stream, KEYS[2] its marks hash. ARGV[1] is MAXLEN (0: no
// trimming); then 9 arguments per record: its lane, its position (commit
// LSN high and low 32 bits, seq, LSN high and low: Lua numbers are doubles,
// exact only to 2^53), and the entry's id, key ("" for none) and value. A
// record of lane "" is always appended. A mark is "c1 c2 seq l1 l2".
// Returns {appended, skipped}.
const appendScript = `
local maxlen = tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
end
local marks, dirty = {}, {}
local appended, skipped = 0, 0
for i = 2, #ARGV, 9 do
  local lane = ARGV[i]
  local p = {tonumber(ARGV[i+1]), tonumber(ARGV[i+2]), tonumber(ARGV[i+3]), tonumber(ARGV[i+4]), tonumber(ARGV[i+5])}
  local above = true
  if lane ~= '' then
    local m = marks[lane]
    if m == nil then
      m = false
      local v = redis.call('HGET', KEYS[2], lane)
      if v then
        m = {}
        for n in string.gmatch(v, '%d+') do m[#m+1] = tonumber(n) end
      end
      marks[lane] = m
    end
    if m then
      above = false
      for j = 1, 5 do
        if p[j] ~= m[j] then
          above = p[j] > m[j]
          break
        end
      end
    end
  end
  if above then
    local args = {'XADD', KEYS[1]}
    if maxlen > 0 then
      args[#args+1] = 'MAXLEN'
      args[#args+1] = '~'
      args[#args+1] = maxlen
    end
    args[#args+1] = '*'
    args[#args+1] = 'id'
    args[#args+1] = ARGV[i+6]
    if ARGV[i+7] ~= '' then
      args[#args+1] = 'key'
      args[#args+1] = ARGV[i+7]
    end
    args[#args+1] = 'value'
    args[#args+1] = ARGV[i+8]
    redis.call(unpack(args))
    appended = appended + 1
    if lane ~= '' then
      marks[lane] = p
      dirty[lane] = true
    end
  else
    skipped = skipped + 1
  end
end
for lane in pairs(dirty) do
  local p = marks[lane]
  redis.call('HSET', KEYS[2], lane, string.format('%d %d %d %d %d', p[1], p[2], p[3], p[4], p[5]))
end
return {appended, skipped}
`

var script = goredis.NewScript(appendScript)

// Lane returns the series of positions a record's redelivery is detected
// in: positions rise within a lane in the order the pipeline delivers
// them. Changes of one source form one lane (commit order, then seq). Read
// events have a lane per table, since snapshot rows share one position and
// count seq per table while tables are read in parallel; so have schema
// events, whose seq is 0 (ordered by their own LSN).
func Lane(r *sink.Record) string {
	e := r.Event
	if e == nil {
		return ""
	}
	switch e.Op {
	case event.OpRead, event.OpSchema:
		return r.Source + "|" + e.Op.String() + "|" + e.Schema + "." + e.Table
	}
	return r.Source
}

func (s *Sink) xaddIdempotent(ctx context.Context, batch []sink.Record) error {
	// One script per stream, with that stream's records in batch order.
	var order []string
	groups := map[string][]int{}
	for i := range batch {
		t := batch[i].Topic
		if _, ok := groups[t]; !ok {
			order = append(order, t)
		}
		groups[t] = append(groups[t], i)
	}
	maxlen := strconv.FormatInt(max(s.opts.MaxLen, 0), 10)
	pipe := s.client.Pipeline()
	// Load the script where it is not yet (a restarted Redis has lost it):
	// EVALSHA in a pipeline cannot fall back to EVAL.
	pipe.ScriptLoad(ctx, appendScript)
	for _, stream := range order {
		args := make([]any, 0, 1+9*len(groups[stream]))
		args = append(args, maxlen)
		for _, i := range groups[stream] {
			r := &batch[i]
			var c, l event.LSN
			var seq int
			if r.Event != nil {
				c, l, seq = r.Event.CommitLSN, r.Event.LSN, r.Event.Seq
			}
			args = append(args, Lane(r),
				uint32(c>>32), uint32(c), max(seq, 0), uint32(l>>32), uint32(l),
				sink.Identity(*r), r.Key, r.Value)
		}
		script.EvalSha(ctx, pipe, []string{stream, stream + s.opts.MarkSuffix}, args...)
	}
	cmds, err := pipe.Exec(ctx)
	if err := s.execError("appending to stream", cmds, err); err != nil {
		return err
	}
	for i, cmd := range cmds[1:] {
		res, _ := cmd.(*goredis.Cmd).Int64Slice()
		if len(res) == 2 && res[1] > 0 {
			s.log.Info("redis: skipped records already in the stream (a redelivery)", "stream", order[i], "skipped", res[1], "appended", res[0])
		}
	}
	return nil
}

// execError returns the first error of a pipeline, naming the stream or
// channel of the command that failed.
func (s *Sink) execError(what string, cmds []goredis.Cmder, err error) error {
	if err == nil {
		return nil
	}
	for _, c := range cmds {
		if cerr := c.Err(); cerr != nil {
			args := c.Args()
			name := ""
			switch strings.ToLower(fmt.Sprint(args[0])) {
			case "xadd", "publish":
				name = fmt.Sprint(args[1])
			case "evalsha", "eval":
				if len(args) > 3 {
					name = fmt.Sprint(args[3])
				}
			}
			if name != "" {
				return fmt.Errorf("%s %q: %w", what, name, cerr)
			}
			return fmt.Errorf("%s: %w", what, cerr)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Close closes the connections. Every Write that returned nil is applied,
// so nothing is lost; Close is idempotent.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.client.Close(); err != nil {
		return fmt.Errorf("closing Redis client: %w", err)
	}
	return nil
}
