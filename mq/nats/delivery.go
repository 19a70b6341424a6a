package nats

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// delivery is one message from a consumer of the service. It holds one of
// its pull loop's slots until it is settled (acked, nak'd, dead-lettered)
// or its ack can no longer count.
type delivery struct {
	msg   jetstream.Msg
	meta  *jetstream.MsgMetadata
	p     *Provider
	s     *session
	sub   *subscription
	slots chan struct{}

	received time.Time

	mu       sync.Mutex
	deadline time.Time // when the server may deliver it again, unless extended
	settled  bool      // acked, nak'd or dead-lettered
	released bool      // its slot is free: settled, or let go when stale
}

func newDelivery(p *Provider, s *session, sub *subscription, slots chan struct{}, m jetstream.Msg, meta *jetstream.MsgMetadata) *delivery {
	now := time.Now()
	return &delivery{msg: m, meta: meta, p: p, s: s, sub: sub, slots: slots, received: now, deadline: now.Add(p.opts.ackWait)}
}

var (
	_ mq.Delivery = (*delivery)(nil)
	_ mq.Staler   = (*delivery)(nil)
)

// staleMargin is how long before its deadline a delivery counts as stale:
// the server's ack wait began when it sent the message, a little before
// it arrived.
func (d *delivery) staleMargin() time.Duration { return d.p.opts.ackWait / 10 }

// Stale implements mq.Staler: the connection it came on is gone (its ack
// cannot be sent on it), or the server may have delivered it again since
// its ack wait passed without an extension (past WithMaxHold, or while the
// link was down).
func (d *delivery) Stale() bool {
	if d.s.isLost() {
		return true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return time.Now().After(d.deadline.Add(-d.staleMargin()))
}

// extend tells the server the delivery is still in progress, unless it was
// held maxHold (0: no limit) already; a stale one is released.
func (d *delivery) extend(now time.Time, maxHold time.Duration) {
	if d.Stale() {
		d.release()
		return
	}
	if maxHold > 0 && now.Sub(d.received) >= maxHold {
		return
	}
	if err := d.msg.InProgress(); err != nil {
		return // not sent: the deadline stands
	}
	d.mu.Lock()
	d.deadline = now.Add(d.p.opts.ackWait)
	d.mu.Unlock()
}

// release lets the delivery go, once: it leaves the holds and frees its
// slot. A stale delivery is let go before it is settled: its handler may
// still ack it, which is harmless and may spare a duplicate.
func (d *delivery) release() {
	d.mu.Lock()
	if d.released {
		d.mu.Unlock()
		return
	}
	d.released = true
	d.mu.Unlock()
	d.s.held.remove(d)
	<-d.slots
}

// settle marks the delivery settled and releases it; it reports false when
// it was settled already.
func (d *delivery) settle() bool {
	d.mu.Lock()
	if d.settled {
		d.mu.Unlock()
		return false
	}
	d.settled = true
	d.mu.Unlock()
	d.release()
	return true
}

// giveBackDelay is how long a delivery given back as its instance stops
// waits before the server delivers it again. The server may still hold
// pull requests of the stopping instance (they expire after pullExpiry),
// and a message it hands to one of those comes back only after the ack
// wait; delayed past them, it goes to an instance that is pulling.
const giveBackDelay = pullExpiry + 250*time.Millisecond

// giveBack naks the delivery as its instance stops consuming, for the
// server to deliver it again after giveBackDelay.
func (d *delivery) giveBack() {
	if d.settle() {
		_ = d.msg.NakWithDelay(giveBackDelay)
	}
}

func (d *delivery) Message() (*message.Message, error) { return decode(d.msg.Headers(), d.msg.Data()) }

func (d *delivery) Redelivered() bool { return d.meta.NumDelivered > 1 }

// Ack acknowledges the delivery. Calling it again, or after Requeue or
// DeadLetter, does nothing.
func (d *delivery) Ack() error {
	if !d.settle() {
		return nil
	}
	if err := d.msg.Ack(); err != nil {
		return fmt.Errorf("mq/nats: ack: %w: %w", mq.ErrUnavailable, err)
	}
	return nil
}

// Requeue gives the delivery back (a nak): the server delivers it again at
// once, first among its consumer's messages.
func (d *delivery) Requeue() error {
	if !d.settle() {
		return nil
	}
	if err := d.msg.Nak(); err != nil {
		return fmt.Errorf("mq/nats: nak: %w: %w", mq.ErrUnavailable, err)
	}
	return nil
}

// DeadLetter publishes the message, its headers and the reason to the
// service's dead-letter stream, waits for the stream's ack and only then
// acks the delivery (see move.go): its copy's message id is the delivery's
// stream, sequence and message id (copyID).
func (d *delivery) DeadLetter(ctx context.Context, reason string) error {
	if d.Stale() {
		return fmt.Errorf("mq/nats: dead-letter: the delivery was taken back: %w", mq.ErrUnavailable)
	}
	id := copyID("dead", d.meta.Stream, d.meta.Sequence.Stream, d.msg.Headers())
	if err := d.p.deadCopy(ctx, d.s, d.msg.Headers(), d.msg.Data(), d.sub.topic, d.sub.stream+"/"+d.sub.consumer, reason, id); err != nil {
		return fmt.Errorf("mq/nats: dead-letter: %w", err)
	}
	return d.Ack()
}

// ownHeader reports the headers a copy of a message leaves behind: those of
// NATS (the message id, expectations) and this package's (TTL, dead-letter
// records, replay target).
func ownHeader(k string) bool {
	lk := strings.ToLower(k)
	return strings.HasPrefix(lk, "nats-") || strings.HasPrefix(lk, "final-")
}
