package final

import (
	"context"
	"fmt"
	"sync"

	"github.com/finalbus/final/message"
)

// Send modes beside the outbox:
//
//   - PublishSync hands a message to the broker and returns its verdict;
//   - PublishAsync does the same and reports the verdict to a callback;
//   - Publish with message.WithConfirm(false) is fire-and-forget.
//
// None of them writes to the outbox: a failure is the caller's to retry,
// and nothing ties them to a transaction. Use Transaction (or Publish with
// the default policy) for messages that must not be lost.

// PublishSync publishes m directly and waits, up to PublishTimeout, for the
// broker's confirm. It returns nil once the broker has the message, or why
// not: mq.ErrUnroutable when no queue is bound to the topic, mq.ErrNacked,
// mq.ErrUnavailable, or the context's error. m's Policy is left as it is:
// the message goes confirmed whatever its Confirm says.
func (b *Bus) PublishSync(ctx context.Context, m *message.Message) error {
	out, err := b.direct(ctx, m)
	if err != nil {
		return err
	}
	conf, err := b.disp.send(ctx, out)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, b.opt.PublishTimeout)
	defer cancel()
	return conf.Wait(wctx)
}

// PublishAsync publishes m directly and calls done with the broker's
// verdict (as PublishSync returns it) from a goroutine of the bus. Once
// PublishAsync returned nil the wait for the verdict no longer depends on
// ctx (a request's context may end right after): it lasts up to
// PublishTimeout, or until Shutdown gives up waiting, and done is called
// exactly once. Shutdown waits for pending callbacks up to its bound; a
// callback still running then is left to finish on its own. The returned
// error reports what fails before the message reaches the broker; done is
// then not called.
func (b *Bus) PublishAsync(ctx context.Context, m *message.Message, done func(error)) error {
	if done == nil {
		return fmt.Errorf("%w: nil callback", ErrNilHandler)
	}
	out, err := b.direct(ctx, m)
	if err != nil {
		return err
	}
	// Registered under the intake lock, which Shutdown closes before it
	// waits for the callbacks.
	b.intake.RLock()
	if b.intakeClosed {
		b.intake.RUnlock()
		return ErrClosed
	}
	b.async.add()
	b.intake.RUnlock()
	conf, err := b.disp.send(ctx, out)
	if err != nil {
		b.async.done()
		return err
	}
	go func() {
		defer b.async.done()
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.opt.PublishTimeout)
		defer cancel()
		stop := context.AfterFunc(b.disp.ctx, cancel) // Shutdown stopped waiting for confirms
		defer stop()
		err := conf.Wait(wctx)
		if err != nil && b.disp.ctx.Err() != nil {
			err = fmt.Errorf("%w: it stopped waiting for the broker's confirm: %w", ErrShutdownTimeout, err)
		}
		done(err)
	}()
	return nil
}

// direct validates a direct publish, a confirmed and undelayed message,
// and returns what to send. The send is confirmed whatever m.Policy says;
// m itself is not changed beyond what check fills in.
func (b *Bus) direct(ctx context.Context, m *message.Message) (outgoing, error) {
	if err := b.check(m); err != nil {
		return outgoing{}, err
	}
	m = withTrace(ctx, m)
	if m.Policy.Delay > 0 {
		return outgoing{}, fmt.Errorf("%w: WithDelay needs the outbox; use Publish", ErrInvalidPolicy)
	}
	// A confirmed send: the broker must route it or say why not.
	policy := *m.Policy
	policy.Confirm = true
	confirmed := *m
	confirmed.Policy = &policy
	return b.snapshot(&confirmed)
}

// callbacks counts the PublishAsync callbacks that have not returned.
type callbacks struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0; nil while nobody waits
}

func (c *callbacks) add() {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
}

func (c *callbacks) done() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n--; c.n == 0 && c.idle != nil {
		close(c.idle)
		c.idle = nil
	}
}

// wait waits until no callback is pending or ctx ends, and returns how
// many are still pending.
func (c *callbacks) wait(ctx context.Context) int {
	c.mu.Lock()
	if c.n == 0 {
		c.mu.Unlock()
		return 0
	}
	if c.idle == nil {
		c.idle = make(chan struct{})
	}
	idle := c.idle
	c.mu.Unlock()
	select {
	case <-idle:
		return 0
	case <-ctx.Done():
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.n
	}
}
