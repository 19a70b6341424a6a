package nats

import (
	"context"
	"errors"
	"fmt"
	"sync"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/finalbus/final/mq"
)

// confirmation wraps nats.go's publish ack future: the library, not this
// package, matches acks with publishes. The verdict is kept once read, so
// that follows can look at it without taking it from Wait.
type confirmation struct {
	fut jetstream.PubAckFuture
	s   *session // the session it went out on
	id  string

	once sync.Once
	done chan struct{} // closed once err is set
	err  error
}

func newConfirmation(fut jetstream.PubAckFuture, s *session, id string) *confirmation {
	return &confirmation{fut: fut, s: s, id: id, done: make(chan struct{})}
}

// Wait implements mq.Confirmation. A connection lost before the ack fails
// the publish with mq.ErrUnavailable: nats.go does not fail the futures of
// a connection that closes.
func (c *confirmation) Wait(ctx context.Context) error {
	select {
	case <-c.done:
	case <-c.fut.Ok():
		c.settle(nil)
	case err := <-c.fut.Err():
		c.settle(c.verdict(err))
	case <-c.s.lost:
		if settled, _ := c.poll(); !settled { // an ack read before the loss wins
			c.settle(fmt.Errorf("mq/nats: message %s: the connection was lost before the ack: %w", c.id, mq.ErrUnavailable))
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	<-c.done
	return c.err
}

// poll reports the verdict if it is in, without waiting.
func (c *confirmation) poll() (settled bool, err error) {
	select {
	case <-c.done:
		return true, c.err
	default:
	}
	select {
	case <-c.fut.Ok():
		c.settle(nil)
	case err := <-c.fut.Err():
		c.settle(c.verdict(err))
	case <-c.done: // another reader took it
	default:
		return false, nil
	}
	<-c.done
	return true, c.err
}

func (c *confirmation) settle(err error) {
	c.once.Do(func() {
		c.err = err
		close(c.done)
	})
}

// verdict maps the future's error to the mq errors. (A duplicate, which
// the stream had from an earlier publish within its duplicate window, is
// acked: the message is stored.)
func (c *confirmation) verdict(err error) error {
	var apiErr *jetstream.APIError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, natsgo.ErrNoResponders):
		return fmt.Errorf("mq/nats: message %s: no stream captures its subject: %w", c.id, mq.ErrUnroutable)
	case errors.Is(err, natsgo.ErrDisconnected), errors.Is(err, natsgo.ErrConnectionClosed):
		return fmt.Errorf("mq/nats: message %s: %w: %w", c.id, mq.ErrUnavailable, err)
	case errors.As(err, &apiErr):
		return fmt.Errorf("mq/nats: message %s: the stream refused it: %w: %w", c.id, mq.ErrNacked, err)
	}
	return fmt.Errorf("mq/nats: message %s: %w: %w", c.id, mq.ErrNacked, err)
}
