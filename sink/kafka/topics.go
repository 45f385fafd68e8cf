package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
)

// ensureTopics checks that the topics exist, creating the missing ones when
// the sink may. Topics found are remembered, so a topic costs one metadata
// request in the sink's life.
func (s *Sink) ensureTopics(ctx context.Context, topics []string) error {
	var ask []string
	for _, t := range topics {
		if !s.known[t] && !contains(ask, t) {
			ask = append(ask, t)
		}
	}
	if len(ask) == 0 {
		return nil
	}
	missing, err := s.missing(ctx, ask)
	if err != nil {
		return err
	}
	if len(missing) > 0 && !s.opts.CreateTopics {
		return fmt.Errorf("producing to kafka: topic %q does not exist: create it, or set create_topics = true", missing[0])
	}
	if len(missing) > 0 {
		if err := s.create(ctx, s.opts.Partitions, s.opts.Replication, nil, missing...); err != nil {
			return err
		}
	}
	for _, t := range ask {
		s.known[t] = true
	}
	return nil
}

// missing returns the topics that do not exist.
func (s *Sink) missing(ctx context.Context, topics []string) ([]string, error) {
	details, err := s.adm.ListTopics(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("listing kafka topics: %w", err)
	}
	var missing []string
	for _, t := range topics {
		d, ok := details[t]
		switch {
		case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition):
			missing = append(missing, t)
		case d.Err != nil:
			return nil, fmt.Errorf("reading metadata of topic %q: %w", t, d.Err)
		}
	}
	return missing, nil
}

func (s *Sink) create(ctx context.Context, partitions int32, replication int16, configs map[string]*string, topics ...string) error {
	if partitions <= 0 {
		partitions = -1 // the broker's num.partitions
	}
	if replication <= 0 {
		replication = -1 // the broker's default.replication.factor
	}
	resp, err := s.adm.CreateTopics(ctx, partitions, replication, configs, topics...)
	if err != nil {
		return fmt.Errorf("creating kafka topics %v: %w", topics, err)
	}
	for _, t := range topics {
		if r, ok := resp[t]; ok && r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("creating kafka topic %q: %w", t, r.Err)
		}
	}
	return nil
}

// ensureOffsetsTopic creates the offsets topic when missing: compacted, so
// that it keeps each sink's newest position, and of one partition.
func (s *Sink) ensureOffsetsTopic(ctx context.Context) error {
	t := s.opts.OffsetsTopic
	if s.known[t] {
		return nil
	}
	missing, err := s.missing(ctx, []string{t})
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		compact := "compact"
		if err := s.create(ctx, 1, s.opts.Replication, map[string]*string{"cleanup.policy": &compact}, t); err != nil {
			return err
		}
	}
	s.known[t] = true
	return nil
}
