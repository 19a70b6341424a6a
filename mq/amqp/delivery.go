package amqp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// Headers set on a dead-lettered message.
const (
	HeaderDeadReason = "x-final-dead-reason"
	HeaderDeadAt     = "x-final-dead-at"
	HeaderDeadQueue  = "x-final-dead-queue"
)

type delivery struct {
	d amqp.Delivery
	p *Provider
	s *session // the session it came on
	a *acks    // its channel's
	// sync: its ack is written before Ack returns (an Ordered topic's
	// shard: the next message of its key waits for it).
	sync bool
}

// Stale reports whether the channel it came on is gone: the broker then
// requeued it, and it can no longer be acknowledged. The channel knows
// before the session's watcher does.
func (d *delivery) Stale() bool {
	if ch, ok := d.d.Acknowledger.(*amqp.Channel); ok && ch.IsClosed() {
		return true
	}
	select {
	case <-d.s.lost:
		return true
	default:
		return false
	}
}

func (d *delivery) Message() (*message.Message, error) { return decode(&d.d) }

func (d *delivery) Redelivered() bool { return d.d.Redelivered }

// Ack acknowledges the delivery: at once for an Ordered topic's shard,
// within ackLinger and with others for the rest (see acks).
func (d *delivery) Ack() error { return d.a.ack(d.d.DeliveryTag, d.sync) }

func (d *delivery) Requeue() error { return d.a.nack(d.d.DeliveryTag, true) }

// DeadLetter publishes the original body, with its properties and the
// reason, to the dead-letter queue, waits for the broker's confirm and only
// then acks the original: a crash in between duplicates, never loses.
func (d *delivery) DeadLetter(ctx context.Context, reason string) error {
	headers := amqp.Table{}
	for k, v := range d.d.Headers {
		headers[k] = v
	}
	headers[HeaderDeadReason] = reason
	headers[HeaderDeadAt] = nowRFC3339()
	headers[HeaderDeadQueue] = d.p.topo.queue
	id := d.d.MessageId
	if id == "" {
		id = "dead-" + randomTag()
	}
	pub := amqp.Publishing{
		Headers:      headers,
		ContentType:  d.d.ContentType,
		DeliveryMode: amqp.Persistent,
		MessageId:    id,
		Timestamp:    d.d.Timestamp,
		Type:         d.d.Type,
		Body:         d.d.Body,
	}
	conf, err := d.p.publish(ctx, "", d.p.topo.dlq, true, pub, nil)
	if err != nil {
		return fmt.Errorf("amqp: dead-letter: %w", err)
	}
	if err := conf.Wait(ctx); err != nil {
		return fmt.Errorf("amqp: dead-letter: %w", err)
	}
	return d.a.ack(d.d.DeliveryTag, true)
}

// nowRFC3339 is the time recorded in HeaderDeadAt.
func nowRFC3339() string { return time.Now().UTC().Format(time.RFC3339Nano) }

var (
	_ mq.Delivery = (*delivery)(nil)
	_ mq.Staler   = (*delivery)(nil)
)

func randomTag() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
