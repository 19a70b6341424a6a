package final_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/message"
)

// A middleware that returns without calling Next ends the chain, as in
// net/http: the handler does not run and the middleware's nil acknowledges
// the message.
func TestMiddlewareWithoutNextEndsTheChain(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".t"
	var (
		mu    sync.Mutex
		trace []string
	)
	note := func(s string) { mu.Lock(); trace = append(trace, s); mu.Unlock() }
	done := make(chan struct{})
	outer := func(c *final.Context) error {
		note("outer>")
		err := c.Next()
		note("<outer")
		close(done) // the whole chain has returned
		return err
	}
	stop := func(c *final.Context) error { note("stop"); return nil } // a filter: drops the message
	e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) {
		b.Subscribe(topic).Middleware(outer, stop).Handler(func(c *final.Context) error {
			note("handler")
			return nil
		})
	}).Publish(topic, []byte("x"))
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the chain did not run")
	}
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"outer>", "stop", "<outer"}, trace, "the handler ran behind a middleware that did not call Next")
}

// The rest of the chain runs at most once per attempt: a second Next
// returns the first one's error and runs nothing, even when a middleware
// further in ended the chain.
func TestNextRunsTheRestOfTheChainOnce(t *testing.T) {
	e := newEnv(t)
	failing, filtered := e.svc+".failing", e.svc+".filtered"
	type result struct{ first, second error }
	results := make(chan result, 2)
	twice := func(c *final.Context) error {
		first := c.Next()
		second := c.Next()
		results <- result{first, second}
		return first
	}
	stop := func(c *final.Context) error { return nil }
	refused := errors.New("refused")
	var failingCalls, filteredCalls atomic.Int32
	pub := e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) {
		b.Subscribe(failing).Middleware(twice).Handler(func(c *final.Context) error {
			failingCalls.Add(1)
			return final.Permanent(refused) // one attempt, then the dead-letter queue
		})
		b.Subscribe(filtered).Middleware(twice, stop).Handler(func(c *final.Context) error {
			filteredCalls.Add(1)
			return nil
		})
	})
	require.NoError(t, pub.Publish(failing, []byte("x")))
	got := waitResult(t, results)
	require.ErrorIs(t, got.first, refused)
	require.Equal(t, got.first, got.second, "the second Next returns the first one's error")
	require.EqualValues(t, 1, failingCalls.Load(), "the handler ran once per attempt")

	require.NoError(t, pub.Publish(filtered, []byte("y")))
	got = waitResult(t, results)
	require.NoError(t, got.first)
	require.NoError(t, got.second)
	require.Zero(t, filteredCalls.Load(), "a second Next ran the handler behind a middleware that ended the chain")
}

func waitResult[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("the chain did not run")
		panic("unreachable")
	}
}

// RunChain refuses what a subscription could not hold, with errors to test.
func TestRunChainRefusesBadArguments(t *testing.T) {
	ok := func(*final.Context) error { return nil }
	m := message.New("t", nil)
	require.ErrorIs(t, final.RunChain(t.Context(), nil, 1, nil, ok), final.ErrInvalidPolicy)
	require.ErrorIs(t, final.RunChain(t.Context(), m, 1, nil), final.ErrNilHandler)
	require.ErrorIs(t, final.RunChain(t.Context(), m, 1, nil, ok, nil), final.ErrNilHandler)
	require.NoError(t, final.RunChain(nil, m, 1, nil, ok), "a nil context is a background one")
}
