package pipeline

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgfeed/pgfeed/config"
	"github.com/pgfeed/pgfeed/sink"
	natssink "github.com/pgfeed/pgfeed/sink/nats"
	redissink "github.com/pgfeed/pgfeed/sink/redis"
)

// openNATS connects a nats sink; Open bounds its own wait (connect
// timeout), so that `pgfeed run` fails at start with one line when the
// server is unreachable, refuses the credentials or lacks the stream.
func openNATS(st *config.NATSSink, log *slog.Logger) (sink.Sink, error) {
	opts := natssink.Options{
		URL: st.URL, User: st.User, Password: st.Password, Token: st.Token, CredsFile: st.Creds, NKeySeedFile: st.NKey,
		Core: !st.JetStream, Subjects: st.StreamSubjects, Stream: st.Stream, CreateStream: st.CreateStream,
		DuplicateWindow: st.DuplicateWindow, Replicas: st.Replicas, MaxAge: st.MaxAge, MaxBytes: st.MaxBytes,
		AckTimeout: st.AckTimeout, Logger: log,
	}
	if st.Storage == "memory" {
		opts.Storage = jetstream.MemoryStorage
	}
	if st.TLS != nil {
		tc, err := st.TLS.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		opts.TLS = tc
	}
	return natssink.Open(context.Background(), opts)
}

// openRedis connects a redis sink and checks that the server answers.
func openRedis(st *config.RedisSink, log *slog.Logger) (sink.Sink, error) {
	opts := redissink.Options{
		Addr: st.Addr, Username: st.Username, Password: st.Password, DB: st.DB,
		MaxLen: st.MaxLen, NotIdempotent: !st.Idempotent, Timeout: st.Timeout, Logger: log,
	}
	if st.Mode == config.RedisChannel {
		opts.Mode = redissink.Channel
	}
	if st.TLS != nil {
		tc, err := st.TLS.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		opts.TLS = tc
	}
	return redissink.Open(context.Background(), opts)
}
