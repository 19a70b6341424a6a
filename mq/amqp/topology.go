package amqp

import (
	"fmt"
	"hash/fnv"
	"slices"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/finalbus/final/mq"
)

// topology names what a service declares on the broker.
type topology struct {
	exchange string
	queue    string // the service queue, "final.<service>"
	dlq      string // its dead-letter queue, "final.<service>.dlq"
	topics   []string
	fanout   []string // broadcast topics, bound to a private queue per connection
	ordered  []string // topics with single-active-consumer shard queues
	quorum   bool     // durable queues are quorum queues
}

func newTopology(exchange string, cfg mq.Config, quorum bool) topology {
	return topology{
		quorum:   quorum,
		exchange: exchange,
		queue:    "final." + cfg.Service,
		dlq:      "final." + cfg.Service + ".dlq",
		topics:   cfg.Topics,
		fanout:   cfg.Broadcast,
		ordered:  cfg.Ordered,
	}
}

// args returns the arguments of a durable queue of the service: extra, and
// its type.
func (t topology) args(extra amqp.Table) amqp.Table {
	args := amqp.Table{}
	for k, v := range extra {
		args[k] = v
	}
	if t.quorum {
		args["x-queue-type"] = "quorum"
	}
	return args
}

// declareQueue declares a durable queue of the service, and says what to
// do when it exists with another type.
func (t topology) declareQueue(ch *amqp.Channel, name string, extra amqp.Table) error {
	if _, err := ch.QueueDeclare(name, true, false, false, false, t.args(extra)); err != nil {
		if isCode(err, amqp.PreconditionFailed) {
			return fmt.Errorf("amqp: declare queue %q: it exists with other arguments (a classic queue cannot become a quorum queue, "+
				"or back: drain and delete it first): %w", name, err)
		}
		return fmt.Errorf("amqp: declare queue %q: %w", name, err)
	}
	return nil
}

// consumes reports whether the service has anything to consume.
func (t topology) consumes() bool { return len(t.topics)+len(t.fanout)+len(t.ordered) > 0 }

// shardQueue names shard i of an ordered topic. The topic is hashed so the
// name stays within AMQP's 255 bytes.
func (t topology) shardQueue(topic string, i int) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(topic))
	return fmt.Sprintf("%s.ordered.%016x.%d", t.queue, h.Sum64(), i)
}

// destination names the queue of this service that takes a message of
// topic with key, given the connection's broadcast queue private; ok is
// false when the service does not subscribe to topic.
func (t topology) destination(topic, key, private string) (queue string, ok bool) {
	switch {
	case slices.Contains(t.ordered, topic):
		shard := 0 // unkeyed messages go to shard 0
		if key != "" {
			shard = mq.Shard(key)
		}
		return t.shardQueue(topic, shard), true
	case slices.Contains(t.topics, topic):
		return t.queue, true
	case slices.Contains(t.fanout, topic) && private != "":
		return private, true
	}
	return "", false
}

// allKeys are the routing keys of topic: unkeyed, and each shard's.
func allKeys(topic string) []string {
	keys := []string{topic}
	for i := 0; i < mq.OrderShards; i++ {
		keys = append(keys, mq.ShardRoutingKey(topic, i))
	}
	return keys
}

// bindAll binds queue to topic and to every shard of it, so that keyed and
// unkeyed messages of topic both reach it.
func (t topology) bindAll(ch *amqp.Channel, queue, topic string) error {
	for _, key := range allKeys(topic) {
		if err := ch.QueueBind(queue, key, t.exchange, false, nil); err != nil {
			return fmt.Errorf("amqp: bind %q to %q: %w", queue, key, err)
		}
	}
	return nil
}

// declare creates the exchange, and for a consuming service its queue,
// bindings and dead-letter queue. Declarations are idempotent, so they run
// again after every reconnect.
func (t topology) declare(ch *amqp.Channel) error {
	if err := ch.ExchangeDeclare(t.exchange, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		return fmt.Errorf("amqp: declare exchange %q: %w", t.exchange, err)
	}
	if !t.consumes() {
		return nil
	}
	if err := t.declareQueue(ch, t.dlq, nil); err != nil {
		return err
	}
	for _, topic := range t.ordered {
		// Shard i takes the keys of shard i; unkeyed messages go to shard
		// 0. One consumer at a time per shard, across all instances.
		for i := 0; i < mq.OrderShards; i++ {
			q := t.shardQueue(topic, i)
			if err := t.declareQueue(ch, q, amqp.Table{"x-single-active-consumer": true}); err != nil {
				return err
			}
			if err := ch.QueueBind(q, mq.ShardRoutingKey(topic, i), t.exchange, false, nil); err != nil {
				return fmt.Errorf("amqp: bind %q: %w", q, err)
			}
			if i == 0 {
				if err := ch.QueueBind(q, topic, t.exchange, false, nil); err != nil {
					return fmt.Errorf("amqp: bind %q: %w", q, err)
				}
			}
		}
	}
	// A topic this service consumes as Ordered or Broadcast must not also
	// reach its service queue (it would be handled twice, once out of
	// order), whatever an earlier start or an instance of an older
	// version bound: unbinding needs no record, and a missing binding or
	// queue is no error.
	for _, topic := range append(append([]string(nil), t.ordered...), t.fanout...) {
		for _, key := range allKeys(topic) {
			if err := ch.QueueUnbind(t.queue, key, t.exchange, nil); err != nil {
				return fmt.Errorf("amqp: unbind %q from %q: %w", t.queue, key, err)
			}
		}
	}
	if len(t.topics) == 0 {
		return nil
	}
	if err := t.declareQueue(ch, t.queue, nil); err != nil {
		return err
	}
	for _, topic := range t.topics {
		if err := t.bindAll(ch, t.queue, topic); err != nil {
			return err
		}
	}
	return nil
}

// queues lists the durable queues the service consumes.
func (t topology) queues() []string {
	var qs []string
	if len(t.topics) > 0 {
		qs = append(qs, t.queue)
	}
	return append(qs, t.shards()...)
}

// shards lists the shard queues of the ordered topics.
func (t topology) shards() []string {
	var qs []string
	for _, topic := range t.ordered {
		for i := 0; i < mq.OrderShards; i++ {
			qs = append(qs, t.shardQueue(topic, i))
		}
	}
	return qs
}

// declarePrivate declares this connection's broadcast queue and binds it.
// It is exclusive, so the broker deletes it with the connection, and named
// by the broker; it is not auto-delete, so that a consumer restarted on the
// same connection finds it again.
func (t topology) declarePrivate(ch *amqp.Channel) (string, error) {
	q, err := ch.QueueDeclare("", false, false, true, false, nil)
	if err != nil {
		return "", fmt.Errorf("amqp: declare broadcast queue: %w", err)
	}
	for _, topic := range t.fanout {
		if err := t.bindAll(ch, q.Name, topic); err != nil {
			return "", err
		}
	}
	return q.Name, nil
}

// Queues returns the durable queues Init declares for cfg: the service
// queue, the shard queues of its ordered topics and the dead-letter queue. They outlive the provider by design; tools
// and tests that remove a service delete them by these names.
func Queues(cfg mq.Config) []string {
	t := newTopology("", cfg, false) // queue names depend on neither the exchange nor the type
	return append(t.queues(), t.dlq)
}
