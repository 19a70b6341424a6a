package amqp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/finalbus/final/mq"
)

// Consume delivers the service queue through one channel that outlives
// reconnects: after a reconnect the consumer is started again on the new
// session.
func (p *Provider) Consume(ctx context.Context) (<-chan mq.Delivery, error) {
	p.mu.Lock()
	state := p.state
	p.mu.Unlock()
	if state != stateRunning {
		return nil, fmt.Errorf("amqp: Consume before Init or after Close: %w", mq.ErrClosed)
	}
	if !p.topo.consumes() {
		return nil, errors.New("amqp: Consume: the service subscribes to no topic")
	}
	out := make(chan mq.Delivery)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(out)
		for attempt := 0; ; attempt++ {
			s := p.waitSession(ctx)
			if s == nil {
				return
			}
			err := p.consumeSession(ctx, s, out)
			if ctx.Err() != nil {
				return
			}
			select {
			case <-p.done:
				return
			case <-s.lost:
				attempt = -1 // a new session starts a new backoff
				continue
			default:
			}
			// The consumer ended while the connection lives on: its
			// channel failed or the broker cancelled it (queue deleted).
			// Declare the topology again and consume anew, with backoff.
			p.cfg.Logger.Warn("amqp: consumer ended, restarting", "err", err)
			t := time.NewTimer(mq.Backoff(p.opts.reconnectMin, p.opts.reconnectMax, attempt))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			case <-p.done:
				t.Stop()
				return
			}
			if err := s.redeclare(p.topo); err != nil {
				p.cfg.Logger.Warn("amqp: re-declare failed", "err", err)
			}
		}
	}()
	return out, nil
}

// consumeSession forwards deliveries from one session until it is lost, ctx
// ends or the provider closes. It consumes every queue of the service (the
// service queue, the shards of ordered topics, the connection's broadcast
// queue) on one channel, with a forwarding goroutine per queue.
func (p *Provider) consumeSession(ctx context.Context, s *session, out chan<- mq.Delivery) error {
	ch, err := s.consConn.Channel()
	if err != nil {
		return err
	}
	// Per consumer (global false): RabbitMQ deprecates the channel-wide
	// limit, and quorum queues refuse it.
	if err := ch.Qos(p.cfg.Prefetch, 0, false); err != nil {
		_ = ch.Close()
		return err
	}
	// Ends when the channel closes (a lost session, or below, when a
	// consumer ended) or the session closes it, first writing what waits.
	a := newAcks(ch, ch.NotifyClose(make(chan *amqp.Error, 1)), p.opts.ackBatch)
	s.acks.Store(a)
	queues := p.topo.queues()
	if s.private != "" {
		queues = append(queues, s.private)
	}
	var (
		streams []<-chan amqp.Delivery
		ordered []bool // streams[i] is an Ordered topic's shard
	)
	for _, q := range queues {
		ds, err := ch.Consume(q, "final."+p.cfg.Service+"."+randomTag(), false, false, false, false, nil)
		if err != nil {
			_ = ch.Close()
			return err
		}
		streams = append(streams, ds)
		ordered = append(ordered, slices.Contains(p.topo.shards(), q))
	}

	var (
		quit   = make(chan struct{}) // tells the forwarders to stop
		closed = make(chan struct{}, len(streams))
		wg     sync.WaitGroup
	)
	for i, ds := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case d, ok := <-ds:
					if !ok {
						closed <- struct{}{}
						return
					}
					select {
					case out <- &delivery{d: d, p: p, s: s, a: a, sync: ordered[i]}:
					case <-quit:
						// Left unacknowledged: closing the channel gives
						// it back with the queue's other unacknowledged
						// deliveries, in order. A nack would give it back
						// alone, ahead of earlier ones still held, and a
						// quorum queue redelivers returned messages in the
						// order they came back: a shard out of order.
						return
					}
				case <-quit:
					return
				}
			}
		}()
	}
	halt := func() { close(quit); wg.Wait() }

	select {
	case <-ctx.Done():
		// Stop handing deliveries out, but keep the consumers and the
		// channel: in-flight handlers still ack on it, and a
		// single-active-consumer shard must not pass to another instance
		// while this one still works on its messages. Close closes the
		// connection, which returns every unacknowledged delivery to its
		// place in its queue.
		halt()
		return nil
	case <-closed:
		// The channel or the connection closed, or the broker cancelled a
		// consumer.
		halt()
		a.close(time.Now().Add(closeTimeout)) // what lingers goes out while the channel may still carry it
		_ = ch.Close()
		return errors.New("amqp: delivery channel closed")
	case <-p.done:
	case <-s.lost:
	}
	halt()
	return nil
}
