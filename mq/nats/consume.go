package nats

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/finalbus/final/mq"
)

// pullExpiry bounds one pull request: an idle consumer asks again this
// often. It is short so that a request the server still holds when the
// puller stops (a message sent to it then waits for the ack wait) is
// rare.
const pullExpiry = time.Second

// deliveryBuffer is how many fetched deliveries may wait for the bus to
// take them: the pull loops hand a fetched batch on without waiting for the
// bus at each message. They hold their consumers' slots like any other,
// and those left when the bus stops are given back when the session
// closes.
const deliveryBuffer = 64

// Consume delivers the messages of every consumer of the service through
// one channel that outlives reconnects: on each session a pull loop per
// consumer fetches as many messages as it has free slots (Config.Prefetch
// per consumer; 1 for the consumers of an Ordered topic, whose server-side
// MaxAckPending is 1 too).
func (p *Provider) Consume(ctx context.Context) (<-chan mq.Delivery, error) {
	p.mu.Lock()
	if p.state != stateRunning {
		p.mu.Unlock()
		return nil, fmt.Errorf("mq/nats: Consume before Init or after Close: %w", mq.ErrClosed)
	}
	if !p.topo.consumes() {
		p.mu.Unlock()
		return nil, errors.New("mq/nats: Consume: the service subscribes to no topic")
	}
	p.pulling.Add(1)
	p.mu.Unlock()
	out := make(chan mq.Delivery, deliveryBuffer)
	go func() {
		defer p.pulling.Done()
		defer close(out)
		for {
			s := p.waitSession(ctx)
			if s == nil {
				return
			}
			p.consumeSession(ctx, s, out)
			if ctx.Err() != nil {
				return
			}
			select {
			case <-p.done:
				return
			default:
			}
		}
	}()
	return out, nil
}

// consumeSession runs the pull loops on s until ctx ends, s is lost or the
// provider closes. The deliveries handed out stay valid after ctx ends:
// the session extends them until they are settled or it closes.
func (p *Provider) consumeSession(ctx context.Context, s *session, out chan<- mq.Delivery) {
	loops, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range p.topo.subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.pull(loops, s, &p.topo.subs[i], s.consumers[i], out)
		}()
	}
	select {
	case <-ctx.Done():
	case <-s.lost:
	case <-p.done:
	}
	stop()
	wg.Wait()
}

// pull fetches from one consumer while ctx lasts, as many messages as it
// has free slots, and hands them out.
func (p *Provider) pull(ctx context.Context, s *session, sub *subscription, c jetstream.Consumer, out chan<- mq.Delivery) {
	slots := make(chan struct{}, sub.batch)
	for attempt := 0; ctx.Err() == nil; {
		n := take(ctx, slots)
		if n == 0 {
			return
		}
		// The pull request lives out its expiry even when ctx ends: the
		// server may still hand it messages, and those must reach offer
		// (which gives them back) rather than a closed inbox, where they
		// would wait out the ack wait. Stopping takes up to pullExpiry.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pullExpiry)
		batch, err := c.Fetch(n, jetstream.FetchContext(fctx))
		got := 0
		if err == nil {
			for m := range batch.Messages() {
				got++
				p.offer(ctx, s, sub, slots, m, out)
			}
			err = batch.Error()
		}
		cancel()
		for ; got < n; got++ {
			<-slots
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			attempt = 0
			continue
		}
		// The consumer is gone (deleted by an operator, or an idle
		// broadcast consumer by the server), or the server failed the
		// request: declare it again, with backoff.
		p.cfg.Logger.Warn("mq/nats: pull failed", "stream", sub.stream, "consumer", sub.consumer, "err", err)
		t := time.NewTimer(mq.Backoff(p.opts.reconnectMin, p.opts.reconnectMax, attempt))
		attempt++
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if fresh, err := p.topo.ensure(ctx, s.js, *sub); err == nil {
			c = fresh
		} else {
			p.cfg.Logger.Warn("mq/nats: re-declare failed", "err", err)
		}
	}
}

// take waits for a free slot and takes every other free one; it returns 0
// when ctx ends first.
func take(ctx context.Context, slots chan struct{}) int {
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return 0
	}
	n := 1
	for n < cap(slots) {
		select {
		case slots <- struct{}{}:
			n++
		default:
			return n
		}
	}
	return n
}

// offer hands a fetched message out, or settles it here: a replayed dead
// letter meant for another consumer, and a message past its TTL, are
// acknowledged and dropped; one fetched as the loop stops is given back.
func (p *Provider) offer(ctx context.Context, s *session, sub *subscription, slots chan struct{}, m jetstream.Msg, out chan<- mq.Delivery) {
	meta, err := m.Metadata()
	if err != nil { // not from a consumer: cannot happen on a pull
		<-slots
		return
	}
	h := m.Headers()
	if to, ok := lookup(h, HeaderReplayTo); ok && to != sub.consumer {
		_ = m.Ack()
		<-slots
		return
	}
	if v, ok := lookup(h, HeaderTTL); ok {
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil && time.Since(meta.Timestamp) > time.Duration(ms)*time.Millisecond {
			p.cfg.Logger.Debug("mq/nats: expired message dropped", "stream", meta.Stream, "seq", meta.Sequence.Stream)
			_ = m.Ack()
			<-slots
			return
		}
	}
	d := newDelivery(p, s, sub, slots, m, meta)
	s.held.add(d)
	if ctx.Err() != nil { // out may have room: give it back at once instead
		d.giveBack()
		return
	}
	select {
	case out <- d:
	case <-ctx.Done():
		d.giveBack()
	}
}
