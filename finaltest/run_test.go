package finaltest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/finaltest"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/middleware"
)

// The chain runs in order around the handler, with the Context the bus
// gives a first attempt.
func TestRunRunsTheChainInOrder(t *testing.T) {
	var trace []string
	mw := func(name string) final.HandlerFunc {
		return func(c *final.Context) error {
			trace = append(trace, name+">")
			err := c.Next()
			trace = append(trace, "<"+name)
			return err
		}
	}
	m := message.New("order.placed", []byte("p"), message.WithKey("42"))
	failed := errors.New("failed")
	err := finaltest.Run(t, m, mw("a"), mw("b"), func(c *final.Context) error {
		trace = append(trace, "handler")
		require.Equal(t, "order.placed", c.Topic)
		require.Equal(t, "42", c.Key)
		require.Same(t, m, c.Message)
		require.Equal(t, 1, c.Attempt)
		require.True(t, c.Context() == t.Context(), "the Context is the test's")
		require.Nil(t, c.Tx())
		require.Nil(t, c.TxBus())
		return failed
	})
	require.ErrorIs(t, err, failed)
	require.Equal(t, []string{"a>", "b>", "handler", "<b", "<a"}, trace)

	// A middleware that does not call Next ends the chain.
	trace = nil
	require.NoError(t, finaltest.Run(t, m, mw("a"), func(*final.Context) error { trace = append(trace, "filter"); return nil },
		func(*final.Context) error { trace = append(trace, "handler"); return nil }))
	require.Equal(t, []string{"a>", "filter", "<a"}, trace)
}

// A middleware runs as in production: middleware.Timeout's deadline
// reaches the handler.
func TestRunAppliesAMiddleware(t *testing.T) {
	err := finaltest.Run(t, message.New("t", nil), middleware.Timeout(time.Minute), func(c *final.Context) error {
		if _, ok := c.Context().Deadline(); !ok {
			return errors.New("no deadline")
		}
		return nil
	})
	require.NoError(t, err)
}

// Next called twice runs the rest of the chain once and returns its first
// result, as for the bus.
func TestRunNextTwice(t *testing.T) {
	calls := 0
	failed := errors.New("failed")
	var first, second error
	err := finaltest.Run(t, message.New("t", nil), func(c *final.Context) error {
		first = c.Next()
		second = c.Next()
		return second
	}, func(*final.Context) error { calls++; return failed })
	require.ErrorIs(t, err, failed)
	require.ErrorIs(t, first, failed)
	require.ErrorIs(t, second, failed)
	require.Equal(t, 1, calls)
}

// A panic is an error wrapping final.ErrHandlerPanic, as the bus makes it;
// a middleware that recovers it and calls Next again sees that error, not
// a success.
func TestRunPanic(t *testing.T) {
	m := message.New("t", nil)
	boom := func(*final.Context) error { panic("boom") }
	err := finaltest.Run(t, m, boom)
	require.ErrorIs(t, err, final.ErrHandlerPanic)
	require.EqualError(t, err, "final: handler panicked: boom")

	var again error
	recoverer := func(c *final.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				again = c.Next()
				err = fmt.Errorf("recovered: %v", r)
			}
		}()
		return c.Next()
	}
	err = finaltest.Run(t, m, recoverer, boom)
	require.EqualError(t, err, "recovered: boom")
	require.ErrorIs(t, again, final.ErrHandlerPanic)
}

// A typed handler gets the value ValueMessage encoded, as it would from
// final.PublishValue.
func TestRunTypedHandler(t *testing.T) {
	for _, codec := range []final.Codec{nil, final.JSONCodec} {
		var got order
		m := finaltest.ValueMessage(t, codec, "order.placed", placed, message.WithKey("42"))
		require.Equal(t, "42", m.Key)
		err := finaltest.Run(t, m, final.Typed(codec, func(_ context.Context, o order) error { got = o; return nil }))
		require.NoError(t, err)
		require.True(t, placed.At.Equal(got.At))
		got.At = placed.At
		require.Equal(t, placed, got)
	}
	// A payload of another type is a permanent failure, as for the bus.
	m := finaltest.ValueMessage(t, nil, "order.placed", "not an order")
	err := finaltest.Run(t, m, final.Typed(nil, func(context.Context, order) error { return nil }))
	require.ErrorIs(t, err, final.ErrPermanent)
}

// Misuse fails the test, rather than returning an error a handler might
// have returned.
func TestRunRefusesBadArguments(t *testing.T) {
	ok := func(*final.Context) error { return nil }
	m := message.New("t", nil)
	require.Equal(t, "finaltest: run a chain: nil message", failure(t, func(tb finaltest.TB) { finaltest.Run(tb, nil, ok) }))
	require.Equal(t, "finaltest: run a chain: no handler", failure(t, func(tb finaltest.TB) { finaltest.Run(tb, m) }))
	require.Equal(t, "finaltest: run a chain: chain[1] is nil", failure(t, func(tb finaltest.TB) { finaltest.Run(tb, m, ok, nil) }))
	require.Equal(t, "finaltest: RunInTx: nil *final.TxBus", failure(t, func(tb finaltest.TB) { finaltest.RunInTx(tb, nil, m, ok) }))
	require.Contains(t, failure(t, func(tb finaltest.TB) { finaltest.ValueMessage(tb, nil, "t", func() {}) }), "finaltest: encode func()")
}

// RunInTx gives the chain an Inbox handler's transaction: its writes and
// publishes are in the test's transaction, seen there, and gone with it.
func TestRunInTx(t *testing.T) { forEachDatabase(t, testRunInTx) }

func testRunInTx(t *testing.T, d database) {
	db, svc := d.open(t)
	credits := d.quote("credits_" + svc)
	_, err := db.Exec("CREATE TABLE " + credits + " (ref VARCHAR(64) NOT NULL)")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = db.Exec("DROP TABLE " + credits) })
	bus := finaltest.NewBus(t, svc, db, final.DefaultOptions())

	credit := func(c *final.Context) error {
		if _, err := c.Tx().ExecContext(c.Context(), "INSERT INTO "+credits+" (ref) VALUES ("+d.ph+")", string(c.Message.Payload)); err != nil {
			return err
		}
		return c.TxBus().Publish("payment.credited", c.Message.Payload)
	}
	tx, err := db.BeginTx(t.Context(), nil)
	require.NoError(t, err)
	defer tx.Rollback()
	txBus := bus.WithTx(tx)
	require.NoError(t, finaltest.RunInTx(t, txBus, message.New("payment.received", []byte("p1")), credit))

	var n int
	require.NoError(t, tx.QueryRow("SELECT COUNT(*) FROM "+credits).Scan(&n))
	require.Equal(t, 1, n, "the handler's write is in the transaction")
	finaltest.RequirePublishedTx(t, txBus, "payment.credited", finaltest.Payload([]byte("p1")))

	require.NoError(t, tx.Rollback())
	require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM "+credits).Scan(&n))
	require.Zero(t, n, "RunInTx does not commit")
}
