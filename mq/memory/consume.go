package memory

import (
	"context"
	"errors"
	"fmt"

	"github.com/finalbus/final/mq"
)

// Consume delivers, until ctx ends or Close, the messages of the queues
// this provider's Config subscribes to: the service queue, the shards of
// its Ordered topics and its broadcast queue.
func (p *Provider) Consume(ctx context.Context) (<-chan mq.Delivery, error) {
	b := p.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if !p.inited || p.closed {
		return nil, fmt.Errorf("memory: Consume before Init or after Close: %w", mq.ErrClosed)
	}
	if !consumes(p.cfg) {
		return nil, errors.New("memory: Consume: the service subscribes to no topic")
	}
	s := b.services[p.cfg.Service]
	var sources []*queue
	if p.private != nil {
		sources = append(sources, p.private)
	}
	if len(p.cfg.Topics) > 0 {
		sources = append(sources, s.queue)
	}
	for _, t := range p.cfg.Ordered {
		sources = append(sources, s.shards[t]...)
	}
	for _, q := range sources {
		q.consumers++
	}
	out := make(chan mq.Delivery)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(out)
		defer func() {
			b.mu.Lock()
			for _, q := range sources {
				q.consumers--
			}
			b.mu.Unlock()
		}()
		p.deliver(ctx, sources, out)
	}()
	return out, nil
}

// deliver hands out the messages of sources one at a time, taking each
// from the next ready queue after the last one taken from, so that busy
// queues do not starve the others.
func (p *Provider) deliver(ctx context.Context, sources []*queue, out chan<- mq.Delivery) {
	b := p.b
	next := 0
	for {
		if ctx.Err() != nil {
			return
		}
		b.mu.Lock()
		if p.closed {
			b.mu.Unlock()
			return
		}
		d := p.takeLocked(sources, &next)
		wake := b.wake
		b.mu.Unlock()
		if d == nil {
			select {
			case <-wake:
				continue
			case <-ctx.Done():
				return
			case <-p.done:
				return
			}
		}
		select {
		case out <- d:
			continue
		case <-ctx.Done():
		case <-p.done:
		}
		// Not handed out: back to its place, as it was.
		b.mu.Lock()
		d.settleLocked()
		d.q.pushFront(d.it)
		b.mu.Unlock()
		return
	}
}

// takeLocked takes a message from the first ready queue of sources from
// *next on, and records it as out with this provider.
func (p *Provider) takeLocked(sources []*queue, next *int) *delivery {
	for i := range sources {
		k := (*next + i) % len(sources)
		q := sources[k]
		if !q.ready() {
			continue
		}
		*next = k + 1
		q.out++
		p.seq++
		d := &delivery{p: p, q: q, it: q.pop()}
		p.out[d] = p.seq
		return d
	}
	return nil
}
