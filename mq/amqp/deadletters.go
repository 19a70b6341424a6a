package amqp

import (
	"context"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/finalbus/final/message"
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

// ReplayDeadLetters implements mq.DeadLetterQueue.
func (p *Provider) ReplayDeadLetters(ctx context.Context, limit int) (int, error) {
	ch, err := p.dlqChannel()
	if err != nil {
		return 0, err
	}
	// Closing the channel returns what was got but not replayed.
	defer ch.Close()
	replayed := 0
	for seen := 0; seen < limit && ctx.Err() == nil; seen++ {
		d, ok, err := ch.Get(p.topo.dlq, false)
		if err != nil {
			return replayed, fmt.Errorf("amqp: replay dead letters: %w", err)
		}
		if !ok {
			break
		}
		dl := deadLetter(d)
		if dl.Topic == "" {
			continue // held unacknowledged until the channel closes
		}
		// A keyed message goes back to its key's shard, as when it was
		// first published, so ordered subscriptions receive it too.
		key := dl.Topic
		if m, err := message.Unmarshal(d.Body); err == nil {
			key = mq.RoutingKey(dl.Topic, m.Key)
		}
		conf, err := p.publish(ctx, p.topo.exchange, key, true, amqp.Publishing{
			ContentType:  d.ContentType,
			DeliveryMode: amqp.Persistent,
			MessageId:    d.MessageId,
			Timestamp:    time.Now(),
			Type:         dl.Topic,
			Body:         d.Body,
		}, nil)
		if err == nil {
			err = conf.Wait(ctx)
		}
		if err != nil {
			return replayed, fmt.Errorf("amqp: replay dead letter %s: %w", d.MessageId, err)
		}
		if err := d.Ack(false); err != nil {
			return replayed, fmt.Errorf("amqp: replay dead letters: %w", err)
		}
		replayed++
	}
	return replayed, ctx.Err()
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

// deadLetter reads what DeadLetter recorded; the topic falls back to the
// body's when the Type property is missing.
func deadLetter(d amqp.Delivery) mq.DeadLetter {
	dl := mq.DeadLetter{Body: d.Body, Topic: d.Type}
	if s, ok := d.Headers[HeaderDeadReason].(string); ok {
		dl.Reason = s
	}
	if s, ok := d.Headers[HeaderDeadAt].(string); ok {
		dl.At, _ = time.Parse(time.RFC3339Nano, s)
	}
	if dl.Topic == "" {
		if m, err := message.Unmarshal(d.Body); err == nil {
			dl.Topic = m.Topic
		}
	}
	return dl
}
