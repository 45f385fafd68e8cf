package pipeline

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pgfeed/pgfeed/sink"
	kafkasource "github.com/pgfeed/pgfeed/source/kafka"
)

// runKafka reads a Kafka source in batches: each batch goes to every sink
// at once, and its offsets are committed only when every sink made it
// durable (psql-streamer's batch semantics, with one goroutine per sink
// rather than per event). A batch not committed (a stop, a crash) is read
// again by the group: at-least-once.
func (p *Pipeline) runKafka(ctx context.Context, src *Source, sinks []*Sink) error {
	log := p.Logger.With("source", src.Name)
	opts := *src.Kafka
	if opts.Logger == nil {
		opts.Logger = log
	}
	ks, err := kafkasource.Open(ctx, opts)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("source %s: %w", src.Name, err)
	}
	defer ks.Close()
	log.Info("consuming", "topics", src.Kafka.Topics, "group", src.Kafka.Group)
	r := &sourceRun{p: p, src: src, consuming: true}
	p.sources.Store(src.Name, r)
	maxBatch := 0
	for _, k := range sinks {
		maxBatch = max(maxBatch, k.MaxBatch)
	}
	type state struct {
		records []sink.Record
		buf     []byte
	}
	states := make([]state, len(sinks))
	for {
		b, err := ks.Poll(ctx, maxBatch)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			r.mu.Lock()
			r.consuming, r.lastErr = false, err
			r.mu.Unlock()
			return fmt.Errorf("source %s: %w", src.Name, err)
		}
		r.mu.Lock()
		r.events += uint64(len(b.Events))
		r.mu.Unlock()
		var wg sync.WaitGroup
		errs := make([]error, len(sinks))
		for i, k := range sinks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st := &states[i]
				errs[i] = p.writeRetrying(ctx, k, func(wctx context.Context) error {
					var err error
					if st.records, st.buf, err = k.encode(b.Events, st.records[:0], st.buf[:0], nil); err != nil {
						return err
					}
					if len(st.records) == 0 {
						return nil
					}
					if err := k.Sink.Write(wctx, st.records); err != nil {
						return err
					}
					stats := p.sinkStats(k.Name)
					stats.Events.Add(uint64(len(st.records)))
					stats.Bytes.Add(uint64(len(st.buf)))
					stats.Batches.Add(1)
					return nil
				})
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err // stopping: the batch is read again next time
			}
		}
		// Committed even when stopping: every sink has the batch.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		err = ks.Commit(cctx, b)
		cancel()
		if err != nil {
			log.Warn("committing offsets; the batch will be read again", "err", err)
		}
	}
}

// writeRetrying runs write until it succeeds, with backoff; once ctx is
// done it stops retrying (the write in progress is not cut short).
func (p *Pipeline) writeRetrying(ctx context.Context, k *Sink, write func(context.Context) error) error {
	log := p.Logger.With("sink", k.Name)
	backoff := p.MinBackoff
	for {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		err := write(wctx)
		cancel()
		if err == nil {
			return nil
		}
		p.sinkStats(k.Name).WriteErrors.Add(1)
		if ctx.Err() != nil {
			return fmt.Errorf("sink %s: %w", k.Name, err)
		}
		log.Warn("writing batch; retrying", "err", err, "in", backoff)
		if !sleep(ctx, backoff) {
			return fmt.Errorf("sink %s: %w", k.Name, err)
		}
		backoff = min(2*backoff, p.MaxBackoff)
	}
}
