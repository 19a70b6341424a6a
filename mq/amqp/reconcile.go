package amqp

import (
	"context"
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

var _ mq.Reconciler = (*Provider)(nil)

// Reconcile implements mq.Reconciler. Init has declared what the Config
// needs; Reconcile removes what prev declared beyond it:
//
//   - a plain topic dropped (or turned Ordered or Broadcast) is unbound
//     from the service queue, with its shard routing keys; its messages
//     still in the queue are consumed and handled by the topic's current
//     subscription, or dead-lettered as having no handler;
//   - when the Config has no plain topic, the service queue goes as a whole;
//   - a topic no longer Ordered loses its 16 shard queues.
//
// A queue that goes is first unbound, then emptied (each message moved to
// the queue that now takes its topic, or to the dead-letter queue with the
// reason), then deleted only if it is empty and unused. A queue another
// instance still consumes (a rolling deploy) is left, and its topic is
// returned in left, to be tried again at the next start.
func (p *Provider) Reconcile(ctx context.Context, prev mq.Subscriptions) (left mq.Subscriptions, err error) {
	s, err := p.session()
	if err != nil {
		return prev, err
	}
	cur := p.cfg.Subscriptions()
	gone := prev.Without(cur)
	var errs []error
	if dropped := gone.Topics; len(dropped) > 0 {
		if len(cur.Topics) == 0 {
			var keys []string
			for _, topic := range dropped {
				keys = append(keys, allKeys(topic)...)
			}
			gone, err := p.retire(ctx, s, p.topo.queue, keys)
			if err != nil {
				errs = append(errs, err)
			}
			if !gone {
				left.Topics = dropped
			}
		} else {
			for _, topic := range dropped {
				if err := p.unbind(s, p.topo.queue, allKeys(topic)); err != nil {
					errs = append(errs, err)
					left.Topics = append(left.Topics, topic)
				}
			}
		}
	}
	for _, topic := range gone.Ordered {
		all := true
		for i := 0; i < mq.OrderShards; i++ {
			keys := []string{mq.ShardRoutingKey(topic, i)}
			if i == 0 {
				keys = append(keys, topic)
			}
			gone, err := p.retire(ctx, s, p.topo.shardQueue(topic, i), keys)
			if err != nil {
				errs = append(errs, err)
			}
			all = all && gone
		}
		if !all {
			left.Ordered = append(left.Ordered, topic)
		}
	}
	return left, errors.Join(errs...)
}

// isCode reports whether err is the broker's channel or connection
// exception with code.
func isCode(err error, code int) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && ae.Code == code
}

// unbind removes the bindings of queue to keys.
func (p *Provider) unbind(s *session, queue string, keys []string) error {
	ch, err := s.conn.Channel()
	if err != nil {
		return fmt.Errorf("amqp: unbind %q: %w: %w", queue, mq.ErrUnavailable, err)
	}
	defer ch.Close()
	for _, key := range keys {
		// RabbitMQ answers ok for a binding or a queue that does not exist.
		if err := ch.QueueUnbind(queue, key, p.topo.exchange, nil); err != nil {
			return fmt.Errorf("amqp: unbind %q from %q: %w", queue, key, err)
		}
	}
	return nil
}

// retire unbinds queue from keys, moves the messages left in it, and
// deletes it if it is then empty and no consumer uses it. gone reports
// whether the queue no longer exists.
func (p *Provider) retire(ctx context.Context, s *session, queue string, keys []string) (gone bool, err error) {
	if err := p.unbind(s, queue, keys); err != nil {
		return false, err
	}
	m, err := newMover(s.conn)
	if err != nil {
		return false, err
	}
	defer m.close()
	// The dead-letter queue may not exist: a service with no subscription
	// left declares none.
	if err := p.topo.declareQueue(m.ch, p.topo.dlq, nil); err != nil {
		return false, err
	}
	moved, dead := 0, 0
	err = m.drain(ctx, queue, func(d amqp.Delivery) error {
		target, headers := p.topo.dlq, amqp.Table(nil)
		if msg, err := message.Unmarshal(d.Body); err != nil {
			headers = deadHeaders(d.Headers, "undecodable, left in "+queue+" when the subscriptions changed: "+err.Error(), queue)
		} else if dest, ok := p.topo.destination(msg.Topic, msg.Key, s.private); ok {
			target, headers = dest, withoutDeadHeaders(d.Headers)
		} else {
			headers = deadHeaders(d.Headers, fmt.Sprintf("left in %s when the service stopped subscribing to %q", queue, msg.Topic), queue)
		}
		if err := m.move(ctx, d, target, headers); err != nil {
			return err
		}
		if target == p.topo.dlq {
			dead++
		} else {
			moved++
		}
		return nil
	})
	switch {
	case isCode(err, amqp.NotFound):
		return true, nil
	case errors.Is(err, errInUse):
		p.cfg.Logger.Warn("amqp: queue no subscription uses is still consumed; left for the next start", "queue", queue)
		return false, nil
	case err != nil:
		return false, err
	}
	ifUnused, ifEmpty := true, true
	if p.topo.quorum {
		// Quorum queues answer if-unused and if-empty with NOT_IMPLEMENTED,
		// which closes the connection: check first, then delete. The queue
		// is unbound, so only a new consumer could slip in between.
		q, err := m.ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		switch {
		case isCode(err, amqp.NotFound):
			return true, nil
		case err != nil:
			return false, fmt.Errorf("amqp: inspect %q: %w", queue, err)
		case q.Messages > 0 || q.Consumers > 0:
			p.cfg.Logger.Warn("amqp: queue no subscription uses is still in use; left for the next start", "queue", queue, "consumers", q.Consumers)
			return false, nil
		}
		ifUnused, ifEmpty = false, false
	}
	if _, err := m.ch.QueueDelete(queue, ifUnused, ifEmpty, false); err != nil {
		if isCode(err, amqp.NotFound) {
			return true, nil
		}
		// PRECONDITION_FAILED: a consumer (an instance of the old
		// subscriptions) or a message arrived meanwhile.
		p.cfg.Logger.Warn("amqp: queue no subscription uses is still in use; left for the next start", "queue", queue, "err", err)
		return false, nil
	}
	p.cfg.Logger.Info("amqp: removed a queue no subscription uses", "queue", queue, "moved", moved, "dead_lettered", dead)
	return true, nil
}
