package final_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/mq/amqp"
)

// Handler retries hold the delivery unacknowledged. RabbitMQ takes a
// delivery back after its consumer_timeout (30 min by default) by closing
// the channel every consumer of the instance shares, so Start refuses
// retries whose waits add up to more than 90% of it.
func TestRetryWaitsMustFitTheBrokersConsumerTimeout(t *testing.T) {
	e := newEnv(t)
	noop := func(*final.Context) error { return nil }
	long := testOptions(t).WithRetryCount(20).WithRetryInterval(time.Second) // 1s, 2s, … up to 1h each: hours
	b := final.New(e.svc, e.db, amqp.NewProvider(e.url), long)
	b.Subscribe(e.svc + ".t").Handler(noop)
	err := b.Start()
	require.ErrorIs(t, err, final.ErrInvalidOption)
	require.ErrorContains(t, err, "RetryCount = 20")
	require.ErrorContains(t, err, "30m0s")

	// A broker told to have no consumer timeout takes them.
	ok := final.New(e.svc, e.db, amqp.NewProvider(e.url, amqp.WithConsumerTimeout(0)), long)
	ok.Subscribe(e.svc + ".t").Handler(noop)
	require.NoError(t, ok.Start())
	require.NoError(t, ok.Shutdown())
}

// Deliveries also wait unacknowledged among the prefetched ones while the
// workers retry others: when every message fails, a competing queue's
// delivery may wait Prefetch / NumSubscriber rounds of full retries before
// its own, an ordered one behind up to Prefetch-1 of its own key. Start
// counts that too, and names Prefetch as a way out.
func TestRetryWaitsCountThePrefetchedDeliveries(t *testing.T) {
	e := newEnv(t)
	noop := func(*final.Context) error { return nil }
	start := func(o final.Options, ordered bool) error {
		b := final.New(e.svc, e.db, amqp.NewProvider(e.url), o)
		if ordered {
			b.Subscribe(e.svc + ".o").Ordered().Handler(noop)
		} else {
			b.Subscribe(e.svc + ".t").Handler(noop)
		}
		err := b.Start()
		if err == nil {
			require.NoError(t, b.Shutdown())
		}
		return err
	}
	// 1 min + 2 min + 4 min = 7 min of waits per message, under the 27 min budget alone.
	o := testOptions(t).WithRetryCount(3).WithRetryInterval(time.Minute)
	err := start(o, false) // Prefetch 32 over 8 workers: (4+1) x 7 min
	require.ErrorIs(t, err, final.ErrInvalidOption)
	require.ErrorContains(t, err, "Prefetch = 32")
	require.NoError(t, start(o.WithPrefetch(8), false)) // (1+1) x 7 min
	err = start(o.WithPrefetch(8), true)                // 8 x 7 min behind one key
	require.ErrorIs(t, err, final.ErrInvalidOption)
	require.NoError(t, start(o.WithPrefetch(3), true)) // 3 x 7 min
}

// RetryInterval << i overflowed from the 38th retry on; the redelivery
// horizon then came out negative and let a far too short InboxRetention
// pass. The waits saturate now, and out-of-range values are refused.
func TestRetryOptionsDoNotOverflow(t *testing.T) {
	e := newEnv(t)
	noop := func(*final.Context) error { return nil }
	start := func(o final.Options) error {
		b := final.New(e.svc, e.db, amqp.NewProvider(e.url, amqp.WithConsumerTimeout(0)), o)
		b.Subscribe(e.svc + ".t").Inbox().Handler(noop)
		err := b.Start()
		if err == nil {
			require.NoError(t, b.Shutdown())
		}
		return err
	}
	// 40 retries from 100ms wait about 26h in all: a day's retention is short.
	err := start(testOptions(t).WithRetryCount(40).WithRetryInterval(100 * time.Millisecond))
	require.ErrorIs(t, err, final.ErrInvalidOption)
	require.ErrorContains(t, err, "redelivery horizon")
	require.NoError(t, start(testOptions(t).WithRetryCount(40).WithRetryInterval(100*time.Millisecond).WithInboxRetention(30*time.Hour)))

	err = start(testOptions(t).WithRetryCount(1001))
	require.ErrorIs(t, err, final.ErrInvalidOption)
	require.ErrorContains(t, err, "RetryCount")
	err = start(testOptions(t).WithRetryInterval(2 * time.Hour))
	require.ErrorIs(t, err, final.ErrInvalidOption)
	require.ErrorContains(t, err, "RetryInterval")
}

// A slow handler can use up the broker's consumer timeout on its own: when
// the next retry's wait would end past 90% of it, the message is
// dead-lettered with the reason instead of held until the broker closes
// the channel.
func TestSlowRetriesAreDeadLetteredBeforeTheBrokersTimeout(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".t"
	var calls atomic.Int64
	// 3s timeout: 2.7s budget. The first call works 2.3s and fails; the
	// retry would wait 0.5-1s more.
	opt := testOptions(t).WithRetryCount(1).WithRetryInterval(time.Second).WithPrefetch(1).WithNumSubscriber(1)
	b := final.New(e.svc, e.db, amqp.NewProvider(e.url, amqp.WithConsumerTimeout(3*time.Second)), opt)
	b.Subscribe(topic).Handler(func(c *final.Context) error {
		calls.Add(1)
		time.Sleep(2300 * time.Millisecond) // the handler's slow work, not synchronisation
		return errors.New("slow and failing")
	})
	require.NoError(t, b.Start())
	t.Cleanup(func() { require.NoError(t, b.Shutdown()) })
	require.NoError(t, b.Publish(topic, []byte("x")))

	var reason string
	testenv.Eventually(t, 30*time.Second, func() bool {
		require.LessOrEqual(t, calls.Load(), int64(1), "retried although the wait would outlive the broker's timeout")
		for _, d := range e.deadLetters() {
			reason, _ = d.Headers[amqp.HeaderDeadReason].(string)
			return true
		}
		return false
	}, "dead-lettered")
	require.Contains(t, reason, "past the broker's timeout")
	require.Equal(t, int64(1), calls.Load())
}
