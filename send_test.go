package final_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
)

func TestSyncAndAsyncSendReturnTheBrokersVerdict(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".t"
	rec := newRecorder()
	b := e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) { b.Subscribe(topic).Handler(rec.handle) })
	ctx := context.Background()

	require.NoError(t, b.PublishSync(ctx, message.New(topic, []byte("sync"))))
	err := b.PublishSync(ctx, message.New(e.svc+".nobody", []byte("x")))
	require.ErrorIs(t, err, mq.ErrUnroutable)
	require.ErrorIs(t, b.PublishSync(ctx, message.New(topic, nil, message.WithDelay(time.Second))), final.ErrInvalidPolicy)

	verdicts := make(chan error, 2)
	require.NoError(t, b.PublishAsync(ctx, message.New(topic, []byte("async")), func(err error) { verdicts <- err }))
	require.NoError(t, b.PublishAsync(ctx, message.New(e.svc+".nobody", nil), func(err error) { verdicts <- err }))
	var got []error
	for i := 0; i < 2; i++ {
		got = append(got, <-verdicts)
	}
	require.True(t, (got[0] == nil && errors.Is(got[1], mq.ErrUnroutable)) || (got[1] == nil && errors.Is(got[0], mq.ErrUnroutable)),
		"verdicts %v", got)
	require.ErrorIs(t, b.PublishAsync(ctx, message.New(topic, nil), nil), final.ErrNilHandler)

	rec.waitAll(t, []string{"sync", "async"}, 10*time.Second)
	require.Zero(t, e.outboxRows(), "direct sends do not touch the outbox")
	require.NoError(t, b.Shutdown())
	require.ErrorIs(t, b.PublishAsync(ctx, message.New(topic, nil), func(error) {}), final.ErrClosed)
}

// PublishSync sends confirmed whatever the message's policy says, and
// leaves the caller's policy as it was.
func TestPublishSyncLeavesTheCallersPolicyAlone(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".t"
	rec := newRecorder()
	b := e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) { b.Subscribe(topic).Handler(rec.handle) })

	m := message.New(topic, []byte("sync"), message.WithConfirm(false))
	policy := m.Policy
	require.NoError(t, b.PublishSync(context.Background(), m))
	require.Same(t, policy, m.Policy)
	require.False(t, m.Policy.Confirm, "PublishSync changed the caller's Policy.Confirm")
	rec.waitAll(t, []string{"sync"}, 10*time.Second)
}

// The verdict of a PublishAsync does not depend on the caller's context
// once the message was handed over: a request's context typically ends
// right after the call.
func TestPublishAsyncVerdictOutlivesTheCallersContext(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".t"
	rec := newRecorder()
	b := e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) { b.Subscribe(topic).Handler(rec.handle) })

	const n = 20
	verdicts := make(chan error, n)
	var refs []string
	for i := 0; i < n; i++ {
		ref := fmt.Sprintf("async-%d", i)
		refs = append(refs, ref)
		ctx, cancel := context.WithCancel(context.Background())
		require.NoError(t, b.PublishAsync(ctx, message.New(topic, []byte(ref)), func(err error) { verdicts <- err }))
		cancel() // the request is over
	}
	for i := 0; i < n; i++ {
		require.NoError(t, <-verdicts, "a verdict was cancelled with the caller's context")
	}
	rec.waitAll(t, refs, 10*time.Second)
}

// A PublishAsync callback that never returns does not hold Shutdown past
// its bound; Shutdown says it left the callback running.
func TestShutdownIsBoundedWhenACallbackBlocks(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".t"
	b := final.New(e.svc, e.db, amqp.NewProvider(e.url), testOptions(t).WithShutdownTimeout(time.Second))
	b.Subscribe(topic).Handler(func(*final.Context) error { return nil })
	require.NoError(t, b.Start())

	called, release, returned := make(chan struct{}), make(chan struct{}), make(chan struct{})
	require.NoError(t, b.PublishAsync(context.Background(), message.New(topic, []byte("x")), func(error) {
		defer close(returned)
		close(called)
		<-release // ignores everything
	}))
	<-called

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := shutdownWithin(t, b, ctx, 10*time.Second)
	require.ErrorIs(t, err, final.ErrShutdownTimeout)
	require.Contains(t, err.Error(), "1 PublishAsync callbacks still running")
	close(release)
	<-returned
}

// shutdownWithin runs ShutdownContext and fails the test unless it
// returns within limit, a generous bound far above the expected time.
func shutdownWithin(t *testing.T, b *final.Bus, ctx context.Context, limit time.Duration) error {
	t.Helper()
	began := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- b.ShutdownContext(ctx) }()
	select {
	case err := <-stopped:
		t.Logf("Shutdown returned after %s: %v", time.Since(began).Round(time.Millisecond), err)
		return err
	case <-time.After(limit):
		t.Fatalf("Shutdown did not return within %s", limit)
		return nil
	}
}
