package amqp

import (
	"context"
	"errors"
	"fmt"

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
		for {
			s := p.waitSession(ctx)
			if s == nil {
				return
			}
			if err := p.consumeSession(ctx, s, out); err != nil {
				p.cfg.Logger.Warn("amqp: consumer stopped", "err", err)
				// A failed channel open or consume means the session is
				// going; wait for the supervisor to replace it.
				select {
				case <-s.lost:
				case <-ctx.Done():
					return
				case <-p.done:
					return
				}
			}
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

// consumeSession forwards deliveries from one session until it is lost, ctx
// ends or the provider closes.
func (p *Provider) consumeSession(ctx context.Context, s *session, out chan<- mq.Delivery) error {
	ch, err := s.conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Qos(p.cfg.Prefetch, 0, false); err != nil {
		return err
	}
	tag := "final." + p.cfg.Service + "." + randomTag()
	deliveries, err := ch.Consume(p.topo.queue, tag, false, false, false, false, nil)
	if err != nil {
		return err
	}
	// The channel stays open after the consumer is cancelled so that
	// in-flight handlers can still ack; closing the connection closes it.
	stop := func() {
		_ = ch.Cancel(tag, false)
		// Deliveries already prefetched go straight back to the queue.
		for d := range deliveries {
			_ = d.Nack(false, true)
		}
	}
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return nil // channel or connection closed: the session is lost
			}
			select {
			case out <- &delivery{d: d, p: p}:
			case <-ctx.Done():
				_ = d.Nack(false, true)
				stop()
				return nil
			case <-p.done:
				return nil
			}
		case <-ctx.Done():
			stop()
			return nil
		case <-p.done:
			return nil
		case <-s.lost:
			return nil
		}
	}
}
