package memory

import (
	"context"
	"fmt"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// Reconcile implements mq.Reconciler, as mq/amqp does: a plain topic prev
// has and the Config does not is unbound from the service queue, and the
// service queue goes when the Config has no plain topic; a topic no
// longer Ordered loses its shard queues. The messages left in a queue that
// goes move to the queue that now takes their topic, or to the dead
// letters. A queue another provider still consumes is only unbound, and
// its topic is returned in left.
func (p *Provider) Reconcile(_ context.Context, prev mq.Subscriptions) (mq.Subscriptions, error) {
	b := p.b
	b.mu.Lock()
	defer b.mu.Unlock()
	var left mq.Subscriptions
	s := b.services[p.cfg.Service]
	if s == nil {
		return left, nil
	}
	gone := prev.Without(p.cfg.Subscriptions())
	for _, t := range gone.Topics {
		delete(s.topics, t)
	}
	if len(p.cfg.Topics) == 0 && s.queue != nil && len(gone.Topics) > 0 {
		if p.retireLocked(s, s.queue) {
			s.queue = nil
		} else {
			left.Topics = gone.Topics
		}
	}
	for _, t := range gone.Ordered {
		shards := s.shards[t]
		if shards == nil {
			continue
		}
		delete(s.shards, t)
		all := true
		for _, q := range shards {
			all = p.retireLocked(s, q) && all
		}
		if !all {
			left.Ordered = append(left.Ordered, t)
		}
	}
	b.notifyLocked()
	return left, nil
}

// retireLocked empties q, which nothing routes to any more, unless a
// provider consumes it, and reports whether it did.
func (p *Provider) retireLocked(s *service, q *queue) bool {
	if q.consumers > 0 {
		return false
	}
	for _, it := range q.items {
		m, err := message.Unmarshal(it.body)
		switch {
		case err != nil:
			s.deadLetterLocked(it.body, "undecodable, left in a queue when the subscriptions changed: "+err.Error())
		case p.destinationLocked(m.Topic, m.Key) != nil:
			p.destinationLocked(m.Topic, m.Key).push(item{body: it.body})
		default:
			s.deadLetterLocked(it.body, fmt.Sprintf("left in a queue when the service stopped subscribing to %q", m.Topic))
		}
	}
	q.items = nil
	return true
}
