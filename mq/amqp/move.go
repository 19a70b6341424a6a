package amqp

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/finalbus/final/mq"
)

// mover moves messages between the queues of one service, one at a time,
// on a channel of its own in confirm mode: it gets a message, publishes a
// copy straight to the target queue (the default exchange routes by queue
// name, so no other service receives it), waits for the broker's confirm
// and only then acknowledges the original. A crash in between leaves a
// duplicate, never a loss. Closing the mover returns what it got and did
// not move to its queue.
type mover struct {
	ch      *amqp.Channel
	returns chan amqp.Return // one publish at a time: at most one return pending
}

func newMover(conn *amqp.Connection) (*mover, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("amqp: %w: %w", mq.ErrUnavailable, err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("amqp: %w: %w", mq.ErrUnavailable, err)
	}
	return &mover{ch: ch, returns: ch.NotifyReturn(make(chan amqp.Return, 1))}, nil
}

func (m *mover) close() { _ = m.ch.Close() }

// get takes the next message of queue, unacknowledged; ok is false when the
// queue is empty.
func (m *mover) get(queue string) (d amqp.Delivery, ok bool, err error) {
	d, ok, err = m.ch.Get(queue, false)
	if err != nil {
		return d, false, fmt.Errorf("amqp: get from %q: %w", queue, err)
	}
	return d, ok, nil
}

// drain consumes queue and passes each message to fn, until the messages
// that were ready when it began are through: it counts them first, so a
// queue that something still publishes to cannot keep it going. It
// consumes rather than gets because a quorum queue with
// single-active-consumer refuses basic.get. It returns errInUse when
// messages stay in the queue but none comes: another consumer is the
// active one of a single-active-consumer queue.
func (m *mover) drain(ctx context.Context, queue string, fn func(amqp.Delivery) error) error {
	q, err := m.ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("amqp: drain %q: %w", queue, err)
	}
	if q.Messages == 0 {
		return nil
	}
	if err := m.ch.Qos(16, 0, false); err != nil {
		return fmt.Errorf("amqp: drain %q: %w", queue, err)
	}
	tag := "final.drain." + randomTag()
	ds, err := m.ch.Consume(queue, tag, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("amqp: drain %q: %w", queue, err)
	}
	var (
		ferr  error
		moved int
		idle  = time.NewTimer(drainIdle)
	)
	defer idle.Stop()
	for ferr == nil && moved < q.Messages {
		select {
		case d, ok := <-ds:
			if !ok {
				return fmt.Errorf("amqp: drain %q: the channel closed", queue)
			}
			ferr = fn(d)
			moved++
			idle.Reset(drainIdle)
		case <-ctx.Done():
			ferr = ctx.Err()
		case <-idle.C:
			ferr = errInUse
		}
	}
	// Once the broker confirmed the cancel, the deliveries it had sent
	// come out of ds before it closes: move them too, so that none is
	// left unacknowledged when the queue is deleted.
	if err := m.ch.Cancel(tag, false); err != nil {
		return fmt.Errorf("amqp: drain %q: %w", queue, err)
	}
	for d := range ds {
		if ferr != nil {
			_ = d.Nack(false, true)
			continue
		}
		ferr = fn(d)
	}
	return ferr
}

// drainIdle is how long drain waits for a delivery while the queue has
// messages before it concludes that another consumer gets them.
const drainIdle = 2 * time.Second

// errInUse: a queue's messages go to another consumer.
var errInUse = errors.New("amqp: queue in use by another consumer")

// move publishes a copy of d, with headers in place of d's, to queue, and
// acknowledges d once the copy is confirmed.
func (m *mover) move(ctx context.Context, d amqp.Delivery, queue string, headers amqp.Table) error {
	pub := amqp.Publishing{
		Headers:      headers,
		ContentType:  d.ContentType,
		DeliveryMode: amqp.Persistent,
		MessageId:    d.MessageId,
		Timestamp:    d.Timestamp,
		Type:         d.Type,
		Expiration:   d.Expiration,
		Body:         d.Body,
	}
	dc, err := m.ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false, pub)
	if err != nil {
		return fmt.Errorf("amqp: move to %q: %w: %w", queue, mq.ErrUnavailable, err)
	}
	acked, err := dc.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("amqp: move to %q: %w", queue, err)
	}
	// RabbitMQ sends a mandatory message's return before its ack, and
	// amqp091-go hands it over before it processes the ack.
	select {
	case <-m.returns:
		return fmt.Errorf("amqp: move to %q: no such queue: %w", queue, mq.ErrUnroutable)
	default:
	}
	if !acked {
		return fmt.Errorf("amqp: move to %q: %w", queue, mq.ErrNacked)
	}
	if err := d.Ack(false); err != nil {
		return fmt.Errorf("amqp: move to %q: ack the original: %w", queue, err)
	}
	return nil
}

// withoutDeadHeaders returns h without what DeadLetter recorded, and
// without the broker's count of the original's deliveries.
func withoutDeadHeaders(h amqp.Table) amqp.Table {
	out := amqp.Table{}
	for k, v := range h {
		switch k {
		case HeaderDeadReason, HeaderDeadAt, HeaderDeadQueue, "x-delivery-count":
		default:
			out[k] = v
		}
	}
	return out
}

// deadHeaders returns h with a dead-letter reason recorded, as DeadLetter
// records it.
func deadHeaders(h amqp.Table, reason, queue string) amqp.Table {
	out := amqp.Table{}
	for k, v := range h {
		out[k] = v
	}
	out[HeaderDeadReason] = reason
	out[HeaderDeadAt] = nowRFC3339()
	out[HeaderDeadQueue] = queue
	return out
}
