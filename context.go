package final

import (
	"context"
	"database/sql"
	"fmt"
	"runtime/debug"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox"
)

// HandlerFunc is a handler or a middleware. A middleware calls c.Next() to
// run the rest of the chain and returns its error (or its own). One that
// returns without calling Next ends the chain there, as in net/http: the
// handler does not run, and the middleware's return value is the
// attempt's outcome (nil acknowledges the message).
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
	pos      int         // index in handlers of the running one; -1 outside the chain
	ran      []nextState // ran[i]: handlers[i] was called, and what it returned
	txBus    *TxBus      // set for Inbox subscriptions
}

type nextState struct {
	called bool
	err    error
}

// RunChain runs chain, middlewares then the handler last, once on m, as a
// subscription runs one attempt at a delivery, with the same code: the
// chain gets a Context with m's Topic, Key and Message, the given Attempt
// and ctx, and, when txBus is not nil, txBus as its TxBus and txBus's
// transaction as its Tx, as an Inbox subscription's chain does. A panic
// in the chain is returned as an error wrapping ErrHandlerPanic. Around
// it the bus retries, records Inbox messages and commits; RunChain does
// none of that. It is for running a chain without a broker: package
// finaltest runs handlers under test with it.
func RunChain(ctx context.Context, m *message.Message, attempt int, txBus *TxBus, chain ...HandlerFunc) error {
	if m == nil {
		return fmt.Errorf("%w: nil message", ErrInvalidPolicy)
	}
	if len(chain) == 0 {
		return fmt.Errorf("%w: empty chain", ErrNilHandler)
	}
	for i, h := range chain {
		if h == nil {
			return fmt.Errorf("%w: chain[%d]", ErrNilHandler, i)
		}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	return runChain(ctx, m, attempt, txBus, chain, nil)
}

// runChain runs chain once on m; onPanic, when set, is told of a panic
// (with its stack) before it is returned as an error.
func runChain(ctx context.Context, m *message.Message, attempt int, txBus *TxBus, chain []HandlerFunc, onPanic func(r any, stack []byte)) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if onPanic != nil {
				onPanic(r, debug.Stack())
			}
			err = fmt.Errorf("%w: %v", ErrHandlerPanic, r)
		}
	}()
	c := newContext(ctx, m, chain, attempt)
	c.txBus = txBus
	return c.Next()
}

func newContext(ctx context.Context, m *message.Message, handlers []HandlerFunc, attempt int) *Context {
	return &Context{
		Topic:    m.Topic,
		Key:      m.Key,
		Message:  m,
		Attempt:  attempt,
		ctx:      ctx,
		handlers: handlers,
		pos:      -1,
		ran:      make([]nextState, len(handlers)),
	}
}

// Context returns the context of the delivery. It is cancelled when
// Shutdown gives up waiting for in-flight handlers.
func (c *Context) Context() context.Context { return c.ctx }

// Tx returns the transaction an Inbox subscription's chain runs in, or nil
// for other subscriptions. Write the handler's rows on it; the bus commits
// it when the chain succeeds. Do not commit or roll it back yourself.
//
// It is nil too when the bus begins its transactions with a driver's
// native Beginner (Options.Beginner): pgxbus.Tx then gives the pgx.Tx.
func (c *Context) Tx() *sql.Tx {
	if c.txBus == nil {
		return nil
	}
	return outbox.AsSQLTx(c.txBus.tx)
}

// DriverTx returns the transaction an Inbox subscription's chain runs in,
// whatever its driver (outbox.AsSQLTx gives a *sql.Tx back, pgxbus.Tx a
// pgx.Tx), or nil for other subscriptions.
func (c *Context) DriverTx() outbox.Tx {
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

// Next runs the rest of the chain, the next middleware or the handler, and
// returns its error; the handler's Next returns nil. The rest of the chain
// runs at most once per attempt: a second call of Next returns the first
// call's error without running anything again (retries are the bus's job,
// see Options.RetryCount). Call Next from the middleware's own goroutine,
// before it returns.
func (c *Context) Next() error {
	next := c.pos + 1
	if next >= len(c.handlers) {
		return nil
	}
	if st := c.ran[next]; st.called {
		return st.err
	}
	// Until it returns: a middleware that recovers a panic of the rest of
	// the chain and calls Next again must not see a success.
	c.ran[next] = nextState{called: true, err: ErrHandlerPanic}
	prev := c.pos
	c.pos = next
	defer func() { c.pos = prev }()
	err := c.handlers[next](c)
	c.ran[next].err = err
	return err
}
