package amqp

import (
	"fmt"

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
}

func newTopology(exchange string, cfg mq.Config) topology {
	return topology{
		exchange: exchange,
		queue:    "final." + cfg.Service,
		dlq:      "final." + cfg.Service + ".dlq",
		topics:   cfg.Topics,
		fanout:   cfg.Broadcast,
	}
}

// consumes reports whether the service has anything to consume.
func (t topology) consumes() bool { return len(t.topics) > 0 || len(t.fanout) > 0 }

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
	if _, err := ch.QueueDeclare(t.dlq, true, false, false, false, nil); err != nil {
		return fmt.Errorf("amqp: declare queue %q: %w", t.dlq, err)
	}
	if len(t.topics) == 0 {
		return nil
	}
	if _, err := ch.QueueDeclare(t.queue, true, false, false, false, nil); err != nil {
		return fmt.Errorf("amqp: declare queue %q: %w", t.queue, err)
	}
	for _, topic := range t.topics {
		if err := ch.QueueBind(t.queue, topic, t.exchange, false, nil); err != nil {
			return fmt.Errorf("amqp: bind %q to %q: %w", t.queue, topic, err)
		}
	}
	return nil
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
		if err := ch.QueueBind(q.Name, topic, t.exchange, false, nil); err != nil {
			return "", fmt.Errorf("amqp: bind broadcast queue to %q: %w", topic, err)
		}
	}
	return q.Name, nil
}
