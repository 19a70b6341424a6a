package memory

import (
	"context"
	"errors"
	"fmt"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// errReturned: the provider was closed before the delivery was settled,
// and gave it back to its queue.
var errReturned = fmt.Errorf("memory: delivery given back to its queue by Close: %w", mq.ErrClosed)

type delivery struct {
	p  *Provider
	q  *queue // where it came from
	it item

	// Guarded by p.b.mu.
	settled bool
	stale   bool // given back by Close
}

var (
	_ mq.Delivery = (*delivery)(nil)
	_ mq.Staler   = (*delivery)(nil)
)

func (d *delivery) Message() (*message.Message, error) { return message.Unmarshal(d.it.body) }
func (d *delivery) Redelivered() bool                  { return d.it.redelivered }

// Stale implements mq.Staler: the provider was closed and gave d back.
func (d *delivery) Stale() bool {
	d.p.b.mu.Lock()
	defer d.p.b.mu.Unlock()
	return d.stale
}

// settleLocked ends d's time out of its queue, which frees a shard; false
// if it had ended already.
func (d *delivery) settleLocked() bool {
	if d.settled {
		return false
	}
	d.settled = true
	delete(d.p.out, d)
	d.q.out--
	d.p.b.notifyLocked()
	return true
}

// Ack removes d; a second Ack does nothing.
func (d *delivery) Ack() error {
	d.p.b.mu.Lock()
	defer d.p.b.mu.Unlock()
	if d.stale {
		return errReturned
	}
	d.settleLocked()
	return nil
}

// Requeue gives d back to the head of its queue, marked redelivered.
func (d *delivery) Requeue() error {
	d.p.b.mu.Lock()
	defer d.p.b.mu.Unlock()
	if d.stale {
		return errReturned
	}
	if d.settleLocked() {
		d.q.pushFront(item{body: d.it.body, redelivered: true})
	}
	return nil
}

// DeadLetter moves d to the service's dead letters.
func (d *delivery) DeadLetter(_ context.Context, reason string) error {
	b := d.p.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if d.stale {
		return errReturned
	}
	s := b.services[d.p.cfg.Service]
	if s == nil {
		return errors.New("memory: dead-letter: the service has no queue")
	}
	if d.settleLocked() {
		s.deadLetterLocked(d.it.body, reason)
	}
	return nil
}
