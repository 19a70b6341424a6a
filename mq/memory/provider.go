package memory

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// Provider is an mq.IProvider on a Broker.
type Provider struct {
	b    *Broker
	done chan struct{} // closed by Close
	wg   sync.WaitGroup

	// Guarded by b.mu.
	cfg     mq.Config
	inited  bool
	closed  bool
	private *queue               // this provider's broadcast queue, if any
	out     map[*delivery]uint64 // deliveries handed out and not settled, by the order they went
	seq     uint64               // the last number in out
}

var (
	_ mq.IProvider        = (*Provider)(nil)
	_ mq.EncodedPublisher = (*Provider)(nil)
	_ mq.OrderedPublisher = (*Provider)(nil)
	_ mq.DeadLetterQueue  = (*Provider)(nil)
	_ mq.Reconciler       = (*Provider)(nil)
)

// Init declares the service's queues and bindings, and this provider's
// broadcast queue. Like mq/amqp it only adds, except that a topic now
// Ordered or Broadcast no longer reaches the service queue; Reconcile
// removes the rest.
func (p *Provider) Init(_ context.Context, cfg mq.Config) error {
	b := p.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if p.inited || p.closed {
		return fmt.Errorf("memory: Init twice or after Close: %w", mq.ErrClosed)
	}
	p.inited, p.cfg = true, cfg
	if len(cfg.Broadcast) > 0 {
		p.private = &queue{}
		b.private[p.private] = slices.Clone(cfg.Broadcast)
	}
	if !consumes(cfg) {
		return nil
	}
	s := b.services[cfg.Service]
	if s == nil {
		s = newService()
		b.services[cfg.Service] = s
	}
	for _, t := range append(slices.Clone(cfg.Ordered), cfg.Broadcast...) {
		delete(s.topics, t)
	}
	for _, t := range cfg.Ordered {
		if s.shards[t] == nil {
			s.shards[t] = newShards()
		}
	}
	if len(cfg.Topics) > 0 && s.queue == nil {
		s.queue = &queue{}
	}
	for _, t := range cfg.Topics {
		s.topics[t] = true
	}
	if cfg.Purge && s.queue != nil {
		s.queue.items = nil
	}
	return nil
}

func consumes(cfg mq.Config) bool { return len(cfg.Topics)+len(cfg.Broadcast)+len(cfg.Ordered) > 0 }

// Publish routes msg to every queue bound to its topic.
func (p *Provider) Publish(ctx context.Context, msg *message.Message) (mq.Confirmation, error) {
	body, err := message.Marshal(msg)
	if err != nil {
		return nil, err
	}
	return p.PublishEncoded(ctx, msg, body)
}

// PublishEncodedAfter implements mq.OrderedPublisher. Publishes settle at
// once and in order, so only a failed prev is something to overtake.
func (p *Provider) PublishEncodedAfter(ctx context.Context, prev mq.Confirmation, msg *message.Message, body []byte) (mq.Confirmation, error) {
	if c, ok := prev.(confirmation); prev != nil && (!ok || c.err != nil) {
		return nil, fmt.Errorf("memory: %s: %w", msg.UUID, mq.ErrOutOfOrder)
	}
	return p.PublishEncoded(ctx, msg, body)
}

// PublishEncoded implements mq.EncodedPublisher. The double keeps every
// message in the envelope format. In the CloudEvents format (msg whole,
// body unused) it encodes what that format carries: msg with the service
// as its Source and without its policy.
func (p *Provider) PublishEncoded(_ context.Context, msg *message.Message, body []byte) (mq.Confirmation, error) {
	b := p.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if p.closed {
		return nil, mq.ErrClosed
	}
	if p.cfg.WireFormat == mq.CloudEvents {
		ev := *msg
		ev.Source, ev.Policy = p.cfg.Service, message.DefaultPolicy()
		var err error
		if body, err = message.Marshal(&ev); err != nil {
			return nil, err
		}
	}
	targets := b.routeLocked(msg.Topic, msg.Key)
	if len(targets) == 0 {
		return confirmation{fmt.Errorf("memory: %s: %w", msg.Topic, mq.ErrUnroutable)}, nil
	}
	for _, q := range targets {
		if len(q.items) >= queueLimit {
			return confirmation{fmt.Errorf("memory: queue full: %w", mq.ErrNacked)}, nil
		}
	}
	for _, q := range targets {
		q.push(item{body: body})
	}
	b.notifyLocked()
	return confirmation{}, nil
}

type confirmation struct{ err error }

func (c confirmation) Wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return c.err
}

// Close stops consuming, gives every delivery this provider has not settled
// back to the head of its queue, marked redelivered, and removes the
// broadcast queue.
func (p *Provider) Close() error {
	b := p.b
	b.mu.Lock()
	if p.closed {
		b.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	delete(b.private, p.private)
	b.mu.Unlock()
	p.wg.Wait() // the Consume loops give back what they took and did not hand out

	b.mu.Lock()
	defer b.mu.Unlock()
	held := make([]*delivery, 0, len(p.out))
	for d := range p.out {
		held = append(held, d)
	}
	// Latest first, each to the head: the queue gets them back in order.
	slices.SortFunc(held, func(x, y *delivery) int { return cmp.Compare(p.out[y], p.out[x]) })
	for _, d := range held {
		d.settleLocked()
		d.stale = true
		if d.q != p.private {
			d.q.pushFront(item{body: d.it.body, redelivered: true})
		}
	}
	b.notifyLocked()
	return nil
}

// destinationLocked returns the queue of this service (or provider, for a
// broadcast topic) that takes a message of topic with key, as its
// subscriptions say; nil if it subscribes to topic no more.
func (p *Provider) destinationLocked(topic, key string) *queue {
	s := p.b.services[p.cfg.Service]
	switch {
	case s == nil:
		return nil
	case slices.Contains(p.cfg.Ordered, topic) && s.shards[topic] != nil:
		return s.shards[topic][shardOf(key)]
	case slices.Contains(p.cfg.Topics, topic):
		return s.queue
	case slices.Contains(p.cfg.Broadcast, topic):
		return p.private
	}
	return nil
}
