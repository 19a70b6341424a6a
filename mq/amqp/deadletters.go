package amqp

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/finalbus/final/mq"
)

// PeekDeadLetters implements mq.DeadLetterQueue. It gets messages without
// acknowledging them and closes its channel, which returns them to the
// queue in their places.
func (p *Provider) PeekDeadLetters(ctx context.Context, limit int) ([]mq.DeadLetter, error) {
	ch, err := p.dlqChannel()
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	var out []mq.DeadLetter
	for len(out) < limit && ctx.Err() == nil {
		d, ok, err := ch.Get(p.topo.dlq, false)
		if err != nil {
			return out, fmt.Errorf("amqp: peek dead letters: %w", err)
		}
		if !ok {
			break
		}
		out = append(out, deadLetter(d))
	}
	return out, ctx.Err()
}

// ReplayDeadLetters implements mq.DeadLetterQueue. A dead letter goes
// straight to the queue of this service that takes its topic now (through
// the default exchange, which routes by queue name), so the other services
// bound to the topic do not receive it again.
func (p *Provider) ReplayDeadLetters(ctx context.Context, limit int) (int, error) {
	if !p.topo.consumes() {
		return 0, fmt.Errorf("amqp: the service subscribes to no topic, so it has no dead-letter queue")
	}
	s, err := p.session()
	if err != nil {
		return 0, err
	}
	m, err := newMover(s.conn)
	if err != nil {
		return 0, err
	}
	// Closing the channel returns what was got but not replayed to the
	// dead-letter queue, in its place.
	defer m.close()
	var (
		replayed int
		skipped  []error
	)
	for seen := 0; seen < limit && ctx.Err() == nil; seen++ {
		d, ok, err := m.get(p.topo.dlq)
		if err != nil {
			return replayed, errors.Join(append(skipped, fmt.Errorf("amqp: replay dead letters: %w", err))...)
		}
		if !ok {
			break
		}
		queue, err := p.replayTarget(d, s.private)
		if err != nil {
			p.cfg.Logger.Warn("amqp: dead letter not replayable; left in the dead-letter queue", "id", d.MessageId, "err", err)
			skipped = append(skipped, err)
			continue // held unacknowledged until the channel closes
		}
		if err := m.move(ctx, d, queue, withoutDeadHeaders(d.Headers)); err != nil {
			if errors.Is(err, mq.ErrUnroutable) || errors.Is(err, mq.ErrNacked) {
				// Its queue is gone (a broadcast queue of another
				// connection) or refused it: the original stays.
				err = fmt.Errorf("%w: %s: %w", mq.ErrNotReplayable, d.MessageId, err)
				p.cfg.Logger.Warn("amqp: dead letter not replayable; left in the dead-letter queue", "id", d.MessageId, "err", err)
				skipped = append(skipped, err)
				continue
			}
			return replayed, errors.Join(append(skipped, fmt.Errorf("amqp: replay dead letter %s: %w", d.MessageId, err))...)
		}
		replayed++
	}
	if len(skipped) > 0 {
		return replayed, fmt.Errorf("amqp: %d dead letters skipped: %w", len(skipped), errors.Join(skipped...))
	}
	return replayed, ctx.Err()
}

// replayTarget names the queue a dead letter is replayed to, or says why it
// cannot be replayed (wrapping mq.ErrNotReplayable).
func (p *Provider) replayTarget(d amqp.Delivery, private string) (string, error) {
	msg, err := decode(&d)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", mq.ErrNotReplayable, d.MessageId, err)
	}
	queue, ok := p.topo.destination(msg.Topic, msg.Key, private)
	if !ok {
		return "", fmt.Errorf("%w: %s: the service no longer subscribes to %q", mq.ErrNotReplayable, d.MessageId, msg.Topic)
	}
	return queue, nil
}

func (p *Provider) dlqChannel() (*amqp.Channel, error) {
	if !p.topo.consumes() {
		return nil, fmt.Errorf("amqp: the service subscribes to no topic, so it has no dead-letter queue")
	}
	s, err := p.session()
	if err != nil {
		return nil, err
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("amqp: dead letters: %w: %w", mq.ErrUnavailable, err)
	}
	return ch, nil
}

// deadLetter reads what DeadLetter recorded and decodes the message; the
// topic falls back to the message's when the Type property is missing.
func deadLetter(d amqp.Delivery) mq.DeadLetter {
	dl := mq.DeadLetter{Body: d.Body, Topic: d.Type}
	if s, ok := d.Headers[HeaderDeadReason].(string); ok {
		dl.Reason = s
	}
	if s, ok := d.Headers[HeaderDeadAt].(string); ok {
		dl.At, _ = time.Parse(time.RFC3339Nano, s)
	}
	dl.Message, dl.Err = decode(&d)
	if dl.Topic == "" && dl.Message != nil {
		dl.Topic = dl.Message.Topic
	}
	return dl
}
