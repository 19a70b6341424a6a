package final_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/mq/amqp"
)

func TestMiddlewareRunsInOrderAroundHandler(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".t"
	var (
		mu    sync.Mutex
		trace []string
	)
	note := func(s string) { mu.Lock(); trace = append(trace, s); mu.Unlock() }
	mw := func(name string) final.HandlerFunc {
		return func(c *final.Context) error {
			note(name + ">")
			err := c.Next()
			note("<" + name)
			return err
		}
	}
	before := func(c *final.Context) error { note("before"); return c.Next() }
	e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) {
		b.Subscribe(topic).Middleware(mw("mw1"), before, mw("mw2")).Handler(func(c *final.Context) error {
			note("handler")
			return nil
		})
	}).Publish(topic, []byte("x"))
	testenv.Eventually(t, 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(trace) == 6 }, "chain ran")
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"mw1>", "before", "mw2>", "handler", "<mw2", "<mw1"}, trace)
}

func TestInstancesCompeteServicesEachGetACopy(t *testing.T) {
	e := newEnv(t)
	other := testenv.Service(t, e.db)
	topic := e.svc + ".shared"
	a1, a2, bRec := newRecorder(), newRecorder(), newRecorder()
	var calls atomic.Int64
	count := func(r *recorder) final.HandlerFunc {
		return func(c *final.Context) error { calls.Add(1); return r.handle(c) }
	}
	pub := e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) { b.Subscribe(topic).Handler(count(a1)) })
	e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) { b.Subscribe(topic).Handler(count(a2)) })
	e.start(other, e.url, testOptions(t), func(b *final.Bus) { b.Subscribe(topic).Handler(bRec.handle) })

	var refs []string
	for i := 0; i < 200; i++ {
		ref := fmt.Sprintf("r%d", i)
		refs = append(refs, ref)
		require.NoError(t, pub.Publish(topic, []byte(ref)))
	}
	bRec.waitAll(t, refs, 20*time.Second)
	testenv.Eventually(t, 20*time.Second, func() bool { return a1.distinct()+a2.distinct() >= len(refs) }, "service A got all")
	for _, ref := range refs {
		require.Equal(t, 1, a1.count(ref)+a2.count(ref), "service A instances together handle %s once", ref)
	}
	require.Positive(t, a1.distinct())
	require.Positive(t, a2.distinct(), "the second instance competes for messages")
}

func TestFailingAndPanickingHandlersAreDeadLetteredWhileOthersFlow(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".t"
	rec := newRecorder()
	var poisonCalls, panicCalls, flakyCalls atomic.Int64
	goodDone := make(chan struct{})
	opt := testOptions(t).WithRetryCount(3).WithRetryInterval(100 * time.Millisecond).WithNumSubscriber(4)
	b := e.start(e.svc, e.url, opt, func(b *final.Bus) {
		b.Subscribe(topic).Handler(func(c *final.Context) error {
			switch p := string(c.Message.Payload); {
			case p == "poison":
				if poisonCalls.Add(1) == 2 {
					// The poison's retry holds its worker until every good
					// message was handled by the others (or the wait
					// below gives up, and the test fails).
					select {
					case <-goodDone:
					case <-time.After(30 * time.Second):
					}
				}
				return errors.New("cannot process poison")
			case p == "panic":
				panicCalls.Add(1)
				var m map[string]int
				//lint:ignore SA5000 a deliberate runtime panic, not an explicit panic() call
				m["boom"]++
			case p == "flaky" && c.Attempt < 3:
				flakyCalls.Add(1)
				return errors.New("transient")
			}
			return rec.handle(c)
		})
	})
	require.NoError(t, b.Publish(topic, []byte("poison")))
	require.NoError(t, b.Publish(topic, []byte("panic")))
	require.NoError(t, b.Publish(topic, []byte("flaky")))
	var refs []string
	for i := 0; i < 100; i++ {
		ref := fmt.Sprintf("ok%d", i)
		refs = append(refs, ref)
		require.NoError(t, b.Publish(topic, []byte(ref)))
	}
	// The good messages arrive while the poison is still being retried.
	rec.waitAll(t, refs, 20*time.Second)
	require.Less(t, poisonCalls.Load(), int64(4), "good messages were not held behind the poison's retries")
	close(goodDone)

	rec.waitAll(t, []string{"flaky"}, 10*time.Second)
	require.EqualValues(t, 2, flakyCalls.Load())

	var dead []amqp091.Delivery
	testenv.Eventually(t, 20*time.Second, func() bool { dead = append(dead, e.deadLetters()...); return len(dead) >= 2 }, "two dead letters")
	require.EqualValues(t, 4, poisonCalls.Load(), "RetryCount=3 means 4 calls")
	require.EqualValues(t, 4, panicCalls.Load())
	reasons := map[string]string{}
	for _, d := range dead {
		m, err := decodeBody(d.Body)
		require.NoError(t, err)
		reasons[string(m)] = fmt.Sprint(d.Headers[amqp.HeaderDeadReason])
	}
	require.Contains(t, reasons["poison"], "cannot process poison")
	require.Contains(t, reasons["panic"], "handler panicked")
	require.Zero(t, rec.count("poison"))
}

func TestUndecodableDeliveryIsDeadLetteredNotFatal(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".t"
	rec := newRecorder()
	b := e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) { b.Subscribe(topic).Handler(rec.handle) })

	conn, err := amqp091.Dial(e.url)
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	for _, body := range [][]byte{[]byte("not msgpack"), {0xc1}, {}, {0x81, 0xa4, 'U', 'U', 'I', 'D', 0xc0}} {
		require.NoError(t, ch.Publish("final", topic, false, false, amqp091.Publishing{Body: body, MessageId: "foreign"}))
	}
	require.NoError(t, b.Publish(topic, []byte("after-garbage")))
	rec.waitAll(t, []string{"after-garbage"}, 10*time.Second)

	var dead []amqp091.Delivery
	testenv.Eventually(t, 10*time.Second, func() bool { dead = append(dead, e.deadLetters()...); return len(dead) >= 4 }, "garbage dead-lettered")
	for _, d := range dead {
		require.True(t, strings.HasPrefix(fmt.Sprint(d.Headers[amqp.HeaderDeadReason]), "undecodable"), "reason %v", d.Headers[amqp.HeaderDeadReason])
	}
}

// Three instances with a Broadcast subscription each receive every message,
// while their competing subscription is still shared.
func TestBroadcastReachesEveryInstance(t *testing.T) {
	e := newEnv(t)
	fan, work := e.svc+".config-changed", e.svc+".work"
	var recs []*recorder
	var pub *final.Bus
	shared := newRecorder()
	for i := 0; i < 3; i++ {
		rec := newRecorder()
		recs = append(recs, rec)
		pub = e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) {
			b.Subscribe(fan).Broadcast().Handler(rec.handle)
			b.Subscribe(work).Handler(shared.handle)
		})
	}
	var refs []string
	for i := 0; i < 30; i++ {
		ref := fmt.Sprintf("f%d", i)
		refs = append(refs, ref)
		require.NoError(t, pub.Publish(fan, []byte(ref)))
	}
	require.NoError(t, pub.Publish(work, []byte("job")))
	for _, rec := range recs {
		rec.waitAll(t, refs, 20*time.Second)
	}
	shared.waitAll(t, []string{"job"}, 10*time.Second)
	require.Equal(t, 1, shared.count("job"))

	b := final.New(e.svc, e.db, amqp.NewProvider(e.url), testOptions(t))
	err := b.Subscribe(fan).Inbox().Broadcast().Handler(recs[0].handle)
	require.ErrorIs(t, err, final.ErrInvalidSubscription)
	require.ErrorIs(t, b.Start(), final.ErrInvalidSubscription)
}
