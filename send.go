package final

import (
	"context"
	"fmt"

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
// mq.ErrUnavailable, or the context's error.
func (b *Bus) PublishSync(ctx context.Context, m *message.Message) error {
	if err := b.checkDirect(m); err != nil {
		return err
	}
	return b.confirmDirect(ctx, m)
}

// PublishAsync publishes m directly and calls done with the broker's
// verdict (as PublishSync returns it) from a goroutine of the bus. Shutdown
// waits for pending callbacks. The returned error reports what fails before
// the message reaches the broker; done is then not called.
func (b *Bus) PublishAsync(ctx context.Context, m *message.Message, done func(error)) error {
	if done == nil {
		return fmt.Errorf("%w: nil callback", ErrNilHandler)
	}
	if err := b.checkDirect(m); err != nil {
		return err
	}
	out, err := snapshot(m)
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
	b.asyncWG.Add(1)
	b.intake.RUnlock()
	conf, err := b.disp.send(ctx, out)
	if err != nil {
		b.asyncWG.Done()
		return err
	}
	go func() {
		defer b.asyncWG.Done()
		wctx, cancel := context.WithTimeout(ctx, b.opt.PublishTimeout)
		defer cancel()
		done(conf.Wait(wctx))
	}()
	return nil
}

// checkDirect validates a direct publish: a confirmed, undelayed message.
func (b *Bus) checkDirect(m *message.Message) error {
	if err := b.check(m); err != nil {
		return err
	}
	if m.Policy.Delay > 0 {
		return fmt.Errorf("%w: WithDelay needs the outbox; use Publish", ErrInvalidPolicy)
	}
	m.Policy.Confirm = true // a confirmed send: the broker must route it or say why not
	return nil
}

func (b *Bus) confirmDirect(ctx context.Context, m *message.Message) error {
	out, err := snapshot(m)
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
