package final

import (
	"context"
	"database/sql"

	"github.com/finalbus/final/message"
)

// HandlerFunc is a handler or a middleware. A middleware calls c.Next() to
// run the rest of the chain and returns its error (or its own); one that
// does not call Next runs before the rest of the chain.
type HandlerFunc func(c *Context) error

// Context is what a handler sees of one delivery.
type Context struct {
	// Topic the message was published under.
	Topic string
	// Key is the message key, if the publisher set one.
	Key string
	// Message is the decoded message, with its UUID, Header and Payload.
	Message *message.Message
	// Attempt counts the calls of the chain for this delivery, from 1.
	Attempt int

	ctx      context.Context
	handlers []HandlerFunc
	index    int
	txBus    *TxBus // set for Inbox subscriptions
}

func newContext(ctx context.Context, m *message.Message, handlers []HandlerFunc, attempt int) *Context {
	return &Context{
		Topic:    m.Topic,
		Key:      m.Key,
		Message:  m,
		Attempt:  attempt,
		ctx:      ctx,
		handlers: handlers,
		index:    -1,
	}
}

// Context returns the context of the delivery. It is cancelled when
// Shutdown gives up waiting for in-flight handlers.
func (c *Context) Context() context.Context { return c.ctx }

// Tx returns the transaction an Inbox subscription's chain runs in, or nil
// for other subscriptions. Write the handler's rows on it; the bus commits
// it when the chain succeeds. Do not commit or roll it back yourself.
func (c *Context) Tx() *sql.Tx {
	if c.txBus == nil {
		return nil
	}
	return c.txBus.tx
}

// TxBus returns a TxBus on Tx, for publishing in the same transaction, or
// nil for subscriptions without Inbox.
func (c *Context) TxBus() *TxBus { return c.txBus }

// SetContext replaces the delivery's context for the rest of the chain; a
// middleware uses it to add a deadline or values.
func (c *Context) SetContext(ctx context.Context) {
	if ctx != nil {
		c.ctx = ctx
	}
}

// Next runs the remaining middleware and the handler, in order, and
// returns the first error.
func (c *Context) Next() error {
	c.index++
	for ; c.index < len(c.handlers); c.index++ {
		if err := c.handlers[c.index](c); err != nil {
			return err
		}
	}
	return nil
}
