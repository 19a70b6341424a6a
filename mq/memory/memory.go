// Package memory is an in-process broker: a test double for mq.IProvider.
// It is not a transport. It routes by topic to one queue per service,
// confirms at once, returns unroutable messages and keeps dead letters in
// memory; it passes the mq/mqtest conformance suite like the real provider.
package memory

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// Broker holds the queues shared by the providers made from it.
type Broker struct {
	mu      sync.Mutex
	queues  map[string]*queue // by service
	private []*queue          // one per provider with broadcast topics
}

type queue struct {
	topics map[string]bool
	items  chan item // redeliveries go round again
	dead   []DeadLetter
}

type item struct {
	body        []byte
	redelivered bool
}

// DeadLetter is a message moved to a service's dead-letter queue.
type DeadLetter struct {
	Body   []byte
	Reason string
}

// NewBroker returns an empty broker.
func NewBroker() *Broker { return &Broker{queues: map[string]*queue{}} }

// Provider returns a new provider connected to b.
func (b *Broker) Provider() *Provider { return &Provider{b: b, done: make(chan struct{})} }

// DeadLetters returns what service dead-lettered so far.
func (b *Broker) DeadLetters(service string) []DeadLetter {
	b.mu.Lock()
	defer b.mu.Unlock()
	if q := b.queues[service]; q != nil {
		return append([]DeadLetter(nil), q.dead...)
	}
	return nil
}

// Provider is an mq.IProvider on a Broker.
type Provider struct {
	b   *Broker
	cfg mq.Config

	mu      sync.Mutex
	inited  bool
	closed  bool
	done    chan struct{}
	wg      sync.WaitGroup
	private *queue // this provider's broadcast queue, if any
}

var (
	_ mq.IProvider        = (*Provider)(nil)
	_ mq.EncodedPublisher = (*Provider)(nil)
	_ mq.DeadLetterQueue  = (*Provider)(nil)
	_ mq.Reconciler       = (*Provider)(nil)
)

// Init declares the service's queue and bindings.
func (p *Provider) Init(_ context.Context, cfg mq.Config) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inited || p.closed {
		return fmt.Errorf("memory: Init twice or after Close: %w", mq.ErrClosed)
	}
	p.inited, p.cfg = true, cfg
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	if len(cfg.Broadcast) > 0 {
		p.private = &queue{topics: map[string]bool{}, items: make(chan item, 1<<16)}
		for _, t := range cfg.Broadcast {
			p.private.topics[t] = true
		}
		p.b.private = append(p.b.private, p.private)
	}
	if len(cfg.Topics) == 0 && len(cfg.Broadcast) == 0 && len(cfg.Ordered) == 0 {
		return nil
	}
	q := p.b.queues[cfg.Service] // also keeps the service's dead letters
	if q == nil {
		q = &queue{topics: map[string]bool{}, items: make(chan item, 1<<16)}
		p.b.queues[cfg.Service] = q
	}
	// One FIFO queue per service: ordered topics need nothing more here.
	for _, t := range append(append([]string(nil), cfg.Topics...), cfg.Ordered...) {
		q.topics[t] = true
	}
	if cfg.Purge {
		for len(q.items) > 0 {
			<-q.items
		}
	}
	return nil
}

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
	if p.cfg.WireFormat == mq.CloudEvents {
		ev := *msg
		ev.Source, ev.Policy = p.cfg.Service, message.DefaultPolicy()
		var err error
		if body, err = message.Marshal(&ev); err != nil {
			return nil, err
		}
	}
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return nil, mq.ErrClosed
	}
	p.b.mu.Lock()
	var targets []*queue
	for _, q := range p.b.queues {
		if q.topics[msg.Topic] {
			targets = append(targets, q)
		}
	}
	for _, q := range p.b.private {
		if q.topics[msg.Topic] {
			targets = append(targets, q)
		}
	}
	p.b.mu.Unlock()
	if len(targets) == 0 {
		return confirmation{fmt.Errorf("memory: %s: %w", msg.Topic, mq.ErrUnroutable)}, nil
	}
	for _, q := range targets {
		select {
		case q.items <- item{body: body}:
		default:
			return confirmation{fmt.Errorf("memory: queue full: %w", mq.ErrNacked)}, nil
		}
	}
	return confirmation{}, nil
}

type confirmation struct{ err error }

func (c confirmation) Wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return c.err
}

// Consume delivers the service queue until ctx ends or Close.
func (p *Provider) Consume(ctx context.Context) (<-chan mq.Delivery, error) {
	p.b.mu.Lock()
	q := p.b.queues[p.cfg.Service]
	p.b.mu.Unlock()
	if q == nil {
		return nil, errors.New("memory: Consume: the service subscribes to no topic")
	}
	// A nil queue channel never delivers.
	shared, private := q.items, chan item(nil)
	if p.private != nil {
		private = p.private.items
	}
	out := make(chan mq.Delivery)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(out)
		for {
			var (
				it   item
				from *queue
			)
			select {
			case it = <-shared:
				from = q
			case it = <-private:
				from = p.private
			case <-ctx.Done():
				return
			case <-p.done:
				return
			}
			d := &delivery{b: p.b, q: from, dead: q, body: it.body, redelivered: it.redelivered}
			select {
			case out <- d:
			case <-ctx.Done():
				from.items <- it
				return
			case <-p.done:
				from.items <- it
				return
			}
		}
	}()
	return out, nil
}

// Close stops consuming; the broadcast queue goes with the provider.
func (p *Provider) Close() error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.done)
	}
	p.mu.Unlock()
	p.b.mu.Lock()
	for i, q := range p.b.private {
		if q == p.private {
			p.b.private = append(p.b.private[:i], p.b.private[i+1:]...)
			break
		}
	}
	p.b.mu.Unlock()
	p.wg.Wait()
	return nil
}

type delivery struct {
	b           *Broker
	q           *queue // where a requeue goes
	dead        *queue // the service queue, which keeps the dead letters
	body        []byte
	redelivered bool

	mu      sync.Mutex
	settled bool
}

func (d *delivery) Message() (*message.Message, error) { return message.Unmarshal(d.body) }
func (d *delivery) Redelivered() bool                  { return d.redelivered }

func (d *delivery) settle() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled {
		return false
	}
	d.settled = true
	return true
}

func (d *delivery) Ack() error {
	d.settle()
	return nil
}

func (d *delivery) Requeue() error {
	if d.settle() {
		d.q.items <- item{body: d.body, redelivered: true}
	}
	return nil
}

func (d *delivery) DeadLetter(_ context.Context, reason string) error {
	if d.settle() {
		d.b.mu.Lock()
		d.dead.dead = append(d.dead.dead, DeadLetter{Body: d.body, Reason: reason})
		d.b.mu.Unlock()
	}
	return nil
}

// PeekDeadLetters implements mq.DeadLetterQueue.
func (p *Provider) PeekDeadLetters(_ context.Context, limit int) ([]mq.DeadLetter, error) {
	var out []mq.DeadLetter
	for _, d := range p.b.DeadLetters(p.cfg.Service) {
		if len(out) == limit {
			break
		}
		dl := mq.DeadLetter{Body: d.Body, Reason: d.Reason}
		dl.Message, dl.Err = message.Unmarshal(d.Body)
		if dl.Message != nil {
			dl.Topic = dl.Message.Topic
		}
		out = append(out, dl)
	}
	return out, nil
}

// ReplayDeadLetters implements mq.DeadLetterQueue: a dead letter goes back
// to this service's queue only (this provider's broadcast queue for a
// broadcast topic). One that cannot be decoded, or whose topic the service
// no longer subscribes to, stays, and the ones behind it go.
func (p *Provider) ReplayDeadLetters(ctx context.Context, limit int) (int, error) {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	q := p.b.queues[p.cfg.Service]
	if q == nil {
		return 0, nil
	}
	var (
		replayed int
		kept     []DeadLetter
		skipped  []error
	)
	for i, dl := range q.dead {
		if i >= limit || ctx.Err() != nil {
			kept = append(kept, q.dead[i:]...)
			break
		}
		m, err := message.Unmarshal(dl.Body)
		var target *queue
		switch {
		case err != nil:
			err = fmt.Errorf("%w: %w", mq.ErrNotReplayable, err)
		case q.topics[m.Topic]:
			target = q
		case p.private != nil && p.private.topics[m.Topic]:
			target = p.private
		default:
			err = fmt.Errorf("%w: the service no longer subscribes to %q", mq.ErrNotReplayable, m.Topic)
		}
		if target != nil {
			select {
			case target.items <- item{body: dl.Body}:
				replayed++
				continue
			default:
				err = fmt.Errorf("memory: queue full: %w", mq.ErrNacked)
			}
		}
		kept = append(kept, dl)
		skipped = append(skipped, err)
	}
	q.dead = kept
	if len(skipped) > 0 {
		return replayed, fmt.Errorf("memory: %d dead letters skipped: %w", len(skipped), errors.Join(skipped...))
	}
	return replayed, ctx.Err()
}

// Reconcile implements mq.Reconciler: the service queue is unbound from the
// topics prev has and the Config does not. Messages already in it stay; the
// service's consumer dead-letters those it has no handler for.
func (p *Provider) Reconcile(_ context.Context, prev mq.Subscriptions) (mq.Subscriptions, error) {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	q := p.b.queues[p.cfg.Service]
	if q == nil {
		return mq.Subscriptions{}, nil
	}
	keep := map[string]bool{}
	for _, t := range append(append([]string(nil), p.cfg.Topics...), p.cfg.Ordered...) {
		keep[t] = true
	}
	for _, t := range append(append([]string(nil), prev.Topics...), prev.Ordered...) {
		if !keep[t] {
			delete(q.topics, t)
		}
	}
	return mq.Subscriptions{}, nil
}
