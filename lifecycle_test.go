package final_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/mq/amqp"
)

// Shutdown waits for a handler in progress; its message is acked, not
// redelivered to the next instance.
func TestShutdownWaitsForInFlightHandler(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".t"
	b, release := startHeld(t, e, topic, testOptions(t), newRecorder())

	stopped := make(chan error, 1)
	go func() { stopped <- b.Shutdown() }()
	select {
	case <-stopped:
		t.Fatal("Shutdown returned while a handler was running")
	case <-time.After(200 * time.Millisecond): // give Shutdown the chance to return early
	}
	close(release)
	require.NoError(t, <-stopped)

	rec := newRecorder()
	next := e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) { b.Subscribe(topic).Handler(rec.handle) })
	require.NoError(t, next.Publish(topic, []byte("marker")))
	rec.waitAll(t, []string{"marker"}, 10*time.Second)
	require.Zero(t, rec.count("slow"), "the handled message was redelivered")
}

// Shutdown starts no handler: the deliveries this instance received that
// no handler took yet (held by the consumer, the router or the workers'
// queue) go back to the broker, for the next instance, instead of being
// handled while the bus stops.
func TestShutdownStartsNoHandler(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".t"
	opt := testOptions(t)
	opt.NumSubscriber = 1
	handled := newRecorder()
	b, release := startHeld(t, e, topic, opt, handled)
	waiting := []string{"w1", "w2", "w3", "w4"}
	for _, p := range waiting {
		require.NoError(t, b.Publish(topic, []byte(p)))
	}
	// Every one is delivered to this instance (unacknowledged, none ready)
	// before it stops.
	ch := e.channel()
	require.Eventually(t, func() bool {
		q, err := ch.QueueDeclarePassive("final."+e.svc, true, false, false, false, nil)
		return err == nil && q.Messages == 0
	}, 10*time.Second, 10*time.Millisecond, "the messages never left the queue")

	stopped := make(chan error, 1)
	go func() { stopped <- b.Shutdown() }()
	// The bus stops consuming before it waits for the handler: released
	// now, the handler's worker finds the next delivery after that.
	require.Eventually(t, func() bool { return final.ConsumingStopped(b) }, 10*time.Second, time.Millisecond)
	close(release)
	require.NoError(t, <-stopped)
	require.Equal(t, 1, handled.distinct(), "a handler started after Shutdown began")
	require.Equal(t, 1, handled.count("slow"))

	rec := newRecorder()
	e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) { b.Subscribe(topic).Handler(rec.handle) })
	rec.waitAll(t, waiting, 10*time.Second)
	require.Zero(t, rec.count("slow"), "the handled message was redelivered")
}

// startHeld starts a bus of e's service whose handler records each message
// of topic in rec, publishes "slow" and returns once a handler holds it:
// that handler returns when release is closed.
func startHeld(t *testing.T, e *env, topic string, opt final.Options, rec *recorder) (b *final.Bus, release chan struct{}) {
	t.Helper()
	started, release := make(chan struct{}), make(chan struct{})
	b = final.New(e.svc, e.db, amqp.NewProvider(e.url), opt)
	b.Subscribe(topic).Handler(func(c *final.Context) error {
		_ = rec.handle(c)
		if string(c.Message.Payload) == "slow" {
			close(started)
			<-release
		}
		return nil
	})
	require.NoError(t, b.Start())
	require.NoError(t, b.Publish(topic, []byte("slow")))
	<-started
	return b, release
}

// A handler that ignores its context and never returns does not hold
// Shutdown past its bound, whether ShutdownTimeout or the caller's
// deadline comes first; Shutdown says it left the handler running.
func TestShutdownIsBoundedWhenAHandlerIgnoresItsContext(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout time.Duration // Options.ShutdownTimeout
	}{
		{"ShutdownTimeout", time.Second},
		{"context deadline", time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			topic := e.svc + ".t"
			started, release, returned := make(chan struct{}), make(chan struct{}), make(chan struct{})
			b := final.New(e.svc, e.db, amqp.NewProvider(e.url), testOptions(t).WithShutdownTimeout(tc.timeout))
			b.Subscribe(topic).Handler(func(c *final.Context) error {
				defer close(returned)
				close(started)
				<-release // ignores c.Context()
				return nil
			})
			require.NoError(t, b.Start())
			require.NoError(t, b.Publish(topic, []byte("stuck")))
			<-started

			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			err := shutdownWithin(t, b, ctx, 10*time.Second)
			require.ErrorIs(t, err, final.ErrShutdownTimeout)
			require.Contains(t, err.Error(), "abandoned: 1 handlers still running")
			close(release)
			<-returned
		})
	}
}
