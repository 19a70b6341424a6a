package amqp

import (
	"context"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/finalbus/final/mq"
)

// confirmation wraps amqp091-go's deferred confirmation; the library, not
// this package, correlates acks with publishes.
type confirmation struct {
	dc      *amqp.DeferredConfirmation
	returns *returnTracker // nil for a publish that is not mandatory
	id      string
	s       *session // the session it went out on
}

func (c *confirmation) Wait(ctx context.Context) error {
	acked, err := c.dc.WaitContext(ctx)
	returned := c.returns != nil && c.returns.settle(c.id)
	switch {
	case err != nil:
		return err
	case !acked:
		return fmt.Errorf("amqp: delivery tag %d: %w", c.dc.DeliveryTag, mq.ErrNacked)
	case returned:
		return fmt.Errorf("amqp: message %s: %w", c.id, mq.ErrUnroutable)
	}
	return nil
}

// returnTracker matches basic.return frames with the publishes waiting for
// a confirm. RabbitMQ sends the return of a mandatory message before its
// ack, and amqp091-go hands it to the notify channel before it processes
// the ack, so a return is in the channel by the time its confirmation is
// done. Receiving happens only under mu, so draining after the confirm sees
// it.
type returnTracker struct {
	ch chan amqp.Return

	mu       sync.Mutex
	awaiting map[string]*awaited // by message id
}

type awaited struct {
	waiters  int
	returned int
}

func newReturnTracker(ch chan amqp.Return) *returnTracker {
	return &returnTracker{ch: ch, awaiting: map[string]*awaited{}}
}

// track registers a publish of id before it is sent.
func (r *returnTracker) track(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.awaiting[id]
	if a == nil {
		a = &awaited{}
		r.awaiting[id] = a
	}
	a.waiters++
}

// settle unregisters one publish of id and reports whether it came back.
// Every tracked publish is settled exactly once, by its Wait.
func (r *returnTracker) settle(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drainLocked()
	a := r.awaiting[id]
	if a == nil {
		return false
	}
	returned := a.returned > 0
	if returned {
		a.returned--
	}
	if a.waiters--; a.waiters <= 0 {
		delete(r.awaiting, id)
	}
	return returned
}

func (r *returnTracker) drainLocked() {
	for {
		select {
		case ret, ok := <-r.ch:
			if !ok {
				return
			}
			if a := r.awaiting[ret.MessageId]; a != nil {
				a.returned++
			}
		default:
			return
		}
	}
}

// run drains the notify channel between Waits, so that it never fills and
// blocks the connection's reader.
func (r *returnTracker) run(stop <-chan struct{}) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			r.mu.Lock()
			r.drainLocked()
			r.mu.Unlock()
		}
	}
}
