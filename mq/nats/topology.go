package nats

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/finalbus/final/mq"
)

// kind is how a subscription's consumer shares its messages.
type kind int

const (
	plain     kind = iota // the service's instances compete
	shard                 // one shard of an Ordered topic: one delivery in flight
	unkeyed               // the unkeyed messages of an Ordered topic: one in flight
	broadcast             // this instance's own
)

// subscription is one JetStream consumer the service reads.
type subscription struct {
	topic    string
	kind     kind
	stream   string
	consumer string
	cfg      jetstream.ConsumerConfig
	batch    int // the most deliveries this instance holds from it
}

// topology is what a service declares: a stream per topic it subscribes
// to, its consumers on them, and its dead-letter stream.
type topology struct {
	names   names
	service string
	streams []jetstream.StreamConfig // the topic streams
	dlq     jetstream.StreamConfig
	subs    []subscription
	// The topics by kind, as consumed: a topic that is Ordered or Broadcast
	// is not also read by the service consumer.
	plain, ordered, fanout []string
}

func newTopology(o options, cfg mq.Config, instance string) topology {
	n := names{prefix: o.prefix}
	t := topology{names: n, service: cfg.Service, ordered: cfg.Ordered}
	for _, topic := range cfg.Broadcast {
		if !slices.Contains(t.ordered, topic) {
			t.fanout = append(t.fanout, topic)
		}
	}
	for _, topic := range cfg.Topics {
		if !slices.Contains(t.ordered, topic) && !slices.Contains(t.fanout, topic) {
			t.plain = append(t.plain, topic)
		}
	}
	base := func(name string) jetstream.ConsumerConfig {
		return jetstream.ConsumerConfig{
			Durable:       name,
			Description:   "final: service " + cfg.Service,
			DeliverPolicy: jetstream.DeliverNewPolicy, // like a queue bound now: nothing from before
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       o.ackWait,
			MaxDeliver:    -1, // the bus bounds redeliveries (Options.MaxRedeliveries)
		}
	}
	prefetch := max(cfg.Prefetch, 1)
	seen := map[string]bool{}
	stream := func(topic string) string {
		name := n.stream(topic)
		if !seen[topic] {
			seen[topic] = true
			// Kept until every consumer acknowledged it.
			t.streams = append(t.streams, o.streamConfig(name, "final: topic "+topic, n.streamSubjects(topic), jetstream.InterestPolicy))
		}
		return name
	}
	for _, topic := range t.plain {
		c := base(serviceConsumer(cfg.Service))
		t.subs = append(t.subs, subscription{topic: topic, kind: plain, stream: stream(topic), consumer: c.Durable, cfg: c, batch: prefetch})
	}
	for _, topic := range t.ordered {
		s := stream(topic)
		c := base(unkeyedConsumer(cfg.Service))
		c.FilterSubject, c.MaxAckPending = n.subject(topic), 1
		t.subs = append(t.subs, subscription{topic: topic, kind: unkeyed, stream: s, consumer: c.Durable, cfg: c, batch: 1})
		for i := 0; i < mq.OrderShards; i++ {
			c := base(shardConsumer(cfg.Service, i))
			c.FilterSubject, c.MaxAckPending = n.shardSubject(topic, i), 1
			t.subs = append(t.subs, subscription{topic: topic, kind: shard, stream: s, consumer: c.Durable, cfg: c, batch: 1})
		}
	}
	for _, topic := range t.fanout {
		c := base("")
		// Not durable: the server deletes it once this instance has not
		// pulled from it for InactiveThreshold.
		c.Name, c.InactiveThreshold = broadcastConsumer(cfg.Service, instance), o.broadcastIdle
		t.subs = append(t.subs, subscription{topic: topic, kind: broadcast, stream: stream(topic), consumer: c.Name, cfg: c, batch: prefetch})
	}
	// Kept until replayed or removed.
	t.dlq = o.streamConfig(n.dlqStream(cfg.Service), "final: dead letters of service "+cfg.Service,
		[]string{n.dlqSubject(cfg.Service)}, jetstream.LimitsPolicy)
	return t
}

// streamConfig is a stream as the provider declares every one: on file,
// with the options' replicas and duplicate window, and no limits but the
// retention policy's.
func (o options) streamConfig(name, description string, subjects []string, retention jetstream.RetentionPolicy) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              name,
		Description:       description,
		Subjects:          subjects,
		Retention:         retention,
		Storage:           jetstream.FileStorage,
		Replicas:          o.replicas,
		Duplicates:        o.duplicates,
		MaxConsumers:      -1,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgsPerSubject: -1,
	}
}

// consumes reports whether the service has anything to consume.
func (t topology) consumes() bool { return len(t.subs) > 0 }

// declare creates or updates the streams and consumers of the service, and
// returns the consumers in the order of t.subs. With purge it first deletes
// the service consumers of its plain topics, which drops what they held
// (the stream keeps what other services still have to read).
// Declarations are idempotent, so they run again after every reconnect.
func (t topology) declare(ctx context.Context, js jetstream.JetStream, purge bool) ([]jetstream.Consumer, error) {
	if !t.consumes() {
		return nil, nil
	}
	for _, cfg := range t.streams {
		if err := t.declareStream(ctx, js, cfg); err != nil {
			return nil, err
		}
	}
	if _, err := js.CreateOrUpdateStream(ctx, t.dlq); err != nil {
		return nil, fmt.Errorf("mq/nats: declare stream %q: %w", t.dlq.Name, err)
	}
	consumers := make([]jetstream.Consumer, len(t.subs))
	for i, sub := range t.subs {
		if purge && sub.kind == plain {
			if err := js.DeleteConsumer(ctx, sub.stream, sub.consumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				return nil, fmt.Errorf("mq/nats: purge %s/%s: %w", sub.stream, sub.consumer, err)
			}
		}
		c, err := t.ensure(ctx, js, sub)
		if err != nil {
			return nil, err
		}
		consumers[i] = c
	}
	return consumers, nil
}

// ensure declares one subscription's consumer. When it is not there, it
// declares its stream first: another service's Reconcile deletes a stream
// it finds without consumers, a service that died while opening a new
// stream leaves it closed (see stream.go), an operator may delete a
// consumer, and the server deletes an idle broadcast consumer.
func (t topology) ensure(ctx context.Context, js jetstream.JetStream, sub subscription) (jetstream.Consumer, error) {
	_, err := js.Consumer(ctx, sub.stream, sub.consumer)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
		for _, cfg := range t.streams {
			if cfg.Name == sub.stream {
				if err := t.declareStream(ctx, js, cfg); err != nil {
					return nil, err
				}
			}
		}
	case err != nil:
		return nil, fmt.Errorf("mq/nats: declare consumer %s/%s: %w", sub.stream, sub.consumer, err)
	}
	return t.consumer(ctx, js, sub, jetstream.DeliverNewPolicy)
}

// target returns the subscription whose consumer takes a message of topic
// with key: for an Ordered topic its key's shard (unkeyed messages have a
// consumer of their own), for a plain one the service consumer, for a
// Broadcast one this instance's. ok is false when the service does not
// subscribe to topic.
func (t topology) target(topic, key string) (sub subscription, ok bool) {
	for _, s := range t.subs {
		if s.topic != topic {
			continue
		}
		switch s.kind {
		case plain, broadcast:
			return s, true
		case unkeyed:
			if key == "" {
				return s, true
			}
		case shard:
			if key != "" && s.cfg.FilterSubject == t.names.shardSubject(topic, mq.Shard(key)) {
				return s, true
			}
		}
	}
	return subscription{}, false
}

// deleteBroadcast deletes this instance's broadcast consumers: they live
// as long as the provider, and would keep what is published for them until
// the server found them idle.
func (t topology) deleteBroadcast(ctx context.Context, js jetstream.JetStream) {
	for _, s := range t.subs {
		if s.kind == broadcast {
			_ = js.DeleteConsumer(ctx, s.stream, s.consumer)
		}
	}
}

// Streams returns the names of the streams Init declares for cfg with
// prefix: one per topic and the dead-letter stream. The topic streams are
// shared with the other services subscribed to the same topics; tools and
// tests that remove a service delete its consumers, and its dead-letter
// stream, by these names.
func Streams(prefix string, cfg mq.Config) []string {
	o := defaultOptions()
	o.prefix = prefix
	t := newTopology(o, cfg, "")
	var out []string
	for _, s := range t.streams {
		out = append(out, s.Name)
	}
	return append(out, t.dlq.Name)
}
