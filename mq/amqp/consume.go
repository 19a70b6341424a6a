package amqp

import (
	"context"
	"errors"
	"fmt"
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
// ends or the provider closes.
func (p *Provider) consumeSession(ctx context.Context, s *session, out chan<- mq.Delivery) error {
	ch, err := s.consConn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Qos(p.cfg.Prefetch, 0, false); err != nil {
		_ = ch.Close()
		return err
	}
	// One consumer on the service queue, one on this connection's
	// broadcast queue; a nil channel stands for one the service lacks.
	var (
		tags                []string
		shared, private     <-chan amqp.Delivery
		sharedOK, privateOK = true, true
	)
	consume := func(queue string) (<-chan amqp.Delivery, error) {
		tag := "final." + p.cfg.Service + "." + randomTag()
		ds, err := ch.Consume(queue, tag, false, false, false, false, nil)
		if err == nil {
			tags = append(tags, tag)
		}
		return ds, err
	}
	if len(p.topo.topics) > 0 {
		if shared, err = consume(p.topo.queue); err != nil {
			_ = ch.Close()
			return err
		}
	}
	if s.private != "" {
		if private, err = consume(s.private); err != nil {
			_ = ch.Close()
			return err
		}
	}
	// The channel stays open after the consumers are cancelled so that
	// in-flight handlers can still ack; closing the connection closes it.
	stop := func() {
		for _, tag := range tags {
			_ = ch.Cancel(tag, false)
		}
		// Deliveries already prefetched go straight back to the queue.
		for _, ds := range []<-chan amqp.Delivery{shared, private} {
			if ds != nil {
				for d := range ds {
					_ = d.Nack(false, true)
				}
			}
		}
	}
	for {
		var (
			d  amqp.Delivery
			ok bool
		)
		select {
		case d, ok = <-shared:
			sharedOK = ok
		case d, ok = <-private:
			privateOK = ok
		case <-ctx.Done():
			stop()
			return nil
		case <-p.done:
			return nil
		case <-s.lost:
			return nil
		}
		if !sharedOK || !privateOK {
			// The channel or the connection closed, or the broker
			// cancelled a consumer.
			_ = ch.Close()
			return errors.New("amqp: delivery channel closed")
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
	}
}
