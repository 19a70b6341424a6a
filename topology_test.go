package final_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
)

// queueExists asks the broker whether queue exists.
func (e *env) queueExists(queue string) bool {
	e.t.Helper()
	ch := e.channel()
	_, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	var ae *amqp091.Error
	if errors.As(err, &ae) && ae.Code == amqp091.NotFound {
		return false
	}
	require.NoError(e.t, err)
	return true
}

// deadReasons returns the dead letters of the service by payload, with the
// reason recorded, draining the dead-letter queue.
func (e *env) deadReasons() map[string]string {
	e.t.Helper()
	out := map[string]string{}
	for _, d := range e.deadLetters() {
		m, err := message.Unmarshal(d.Body)
		require.NoError(e.t, err)
		out[string(m.Payload)], _ = d.Headers[amqp.HeaderDeadReason].(string)
	}
	return out
}

// A service restarted with other subscriptions receives each message of each
// topic it subscribes to once, in the queue its subscription needs, receives
// nothing for the topics it dropped, and leaves no queue without consumer;
// what was left in a queue that goes is moved, not lost.
func TestRestartFollowsChangedSubscriptions(t *testing.T) {
	e := newEnv(t)
	var (
		toOrdered = e.svc + ".a" // plain, then ordered
		dropped   = e.svc + ".b" // ordered, then dropped
		gone      = e.svc + ".c" // plain, then dropped
		added     = e.svc + ".d" // added by the restart
		kept      = e.svc + ".e" // plain throughout
	)
	testenv.DropQueues(t, amqp.Queues(mq.Config{Service: e.svc, Ordered: []string{toOrdered, dropped}})...)
	before := newRecorder()
	first := e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) {
		b.Subscribe(toOrdered).Handler(before.handle)
		b.Subscribe(dropped).Ordered().Handler(before.handle)
		b.Subscribe(gone).Handler(before.handle)
		b.Subscribe(kept).Handler(before.handle)
	})
	require.NoError(t, first.Shutdown())

	// Published while the service is down: waiting in its queues.
	pub := e.start(e.svc, e.url, testOptions(t), nil) // a publishing role leaves the topology alone
	for i := 0; i < 3; i++ {
		require.NoError(t, pub.Publish(toOrdered, []byte(fmt.Sprintf("a-before-%d", i))))
	}
	require.NoError(t, pub.PublishMessage(message.New(dropped, []byte("b-before"), message.WithKey("k1"))))
	require.NoError(t, pub.Publish(gone, []byte("c-before")))
	require.NoError(t, pub.Publish(kept, []byte("e-before")))
	testenv.Eventually(t, 20*time.Second, func() bool { return e.outboxRows() == 0 }, "published before the restart")

	after := newRecorder()
	e.start(e.svc, e.url, testOptions(t).WithNumSubscriber(1), func(b *final.Bus) {
		b.Subscribe(toOrdered).Ordered().Handler(after.handle)
		b.Subscribe(added).Handler(after.handle)
		b.Subscribe(kept).Handler(after.handle)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, topic := range []string{dropped, gone} {
		err := pub.PublishSync(ctx, message.New(topic, []byte("after")))
		require.ErrorIs(t, err, mq.ErrUnroutable, "%s: nothing may receive a dropped topic", topic)
	}
	want := []string{"a-before-0", "a-before-1", "a-before-2", "e-before"}
	for i := 0; i < 5; i++ {
		ref := fmt.Sprintf("a-after-%d", i)
		want = append(want, ref)
		require.NoError(t, pub.PublishMessage(message.New(toOrdered, []byte(ref), message.WithKey(fmt.Sprintf("k%d", i)))))
	}
	require.NoError(t, pub.Publish(added, []byte("d-after")))
	want = append(want, "d-after")
	after.waitAll(t, want, 30*time.Second)
	// The service queue is FIFO with one worker: once this is handled, so
	// is every copy of the messages above that reached that queue.
	require.NoError(t, pub.Publish(kept, []byte("sentinel")))
	after.waitAll(t, []string{"sentinel"}, 30*time.Second)
	for _, ref := range want {
		require.Equal(t, 1, after.count(ref), "%s handled once", ref)
	}

	for i := 0; i < mq.OrderShards; i++ {
		q := amqp.Queues(mq.Config{Service: e.svc, Ordered: []string{dropped}})[i]
		require.False(t, e.queueExists(q), "shard queue %s of the dropped ordered topic is gone", q)
	}
	// Left behind, not lost: the dropped ordered topic's message moved to
	// the dead-letter queue when its shard went; the dropped plain topic's
	// was consumed from the service queue and dead-lettered as unhandled.
	dead := e.deadReasons()
	require.Contains(t, dead["b-before"], "stopped subscribing")
	require.Contains(t, dead["c-before"], "no handler")
	require.Len(t, dead, 2)
}

// When a restart leaves no plain subscription, the service queue goes; its
// messages move to the queue that now takes their topic.
func TestServiceQueueGoesWithItsLastPlainSubscription(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".t"
	testenv.DropQueues(t, amqp.Queues(mq.Config{Service: e.svc, Ordered: []string{topic}})...)
	first := e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) { b.Subscribe(topic).Handler(newRecorder().handle) })
	require.NoError(t, first.Shutdown())
	pub := e.start(e.svc, e.url, testOptions(t), nil)
	require.NoError(t, pub.PublishMessage(message.New(topic, []byte("waiting"), message.WithKey("k"))))
	testenv.Eventually(t, 20*time.Second, func() bool { return e.outboxRows() == 0 }, "published")

	rec := newRecorder()
	e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) { b.Subscribe(topic).Ordered().Handler(rec.handle) })
	rec.waitAll(t, []string{"waiting"}, 20*time.Second)
	require.False(t, e.queueExists("final."+e.svc), "the service queue no subscription uses is gone")
	require.NoError(t, pub.PublishMessage(message.New(topic, []byte("next"), message.WithKey("k"))))
	rec.waitAll(t, []string{"next"}, 20*time.Second)
	require.Equal(t, 1, rec.count("waiting"))
}

// Replaying dead letters reaches the replaying service only: another
// service subscribed to the same topic handled the message already. An
// undecodable dead letter is skipped and reported, and the rest go.
func TestReplayReachesOnlyTheReplayingService(t *testing.T) {
	e := newEnv(t)
	other := testenv.Service(t, e.db)
	topic, ordered := e.svc+".t", e.svc+".o"
	testenv.DropQueues(t, amqp.Queues(mq.Config{Service: e.svc, Ordered: []string{ordered}})...)
	var failing atomic.Bool
	failing.Store(true)
	mine, theirs := newRecorder(), newRecorder()
	h := func(c *final.Context) error {
		if failing.Load() {
			return final.Permanent(errors.New("not yet"))
		}
		return mine.handle(c)
	}
	bus := e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) {
		b.Subscribe(topic).Handler(h)
		b.Subscribe(ordered).Ordered().Handler(h)
	})
	e.start(other, e.url, testOptions(t).WithNumSubscriber(1), func(b *final.Bus) { b.Subscribe(topic).Handler(theirs.handle) })

	// An undecodable dead letter ahead of the others.
	ch := e.channel()
	require.NoError(t, ch.PublishWithContext(context.Background(), "", "final."+e.svc+".dlq", true, false,
		amqp091.Publishing{MessageId: "garbage", Type: topic, Body: []byte("not msgpack")}))
	require.NoError(t, bus.Publish(topic, []byte("plain")))
	require.NoError(t, bus.PublishMessage(message.New(ordered, []byte("keyed"), message.WithKey("k"))))
	theirs.waitAll(t, []string{"plain"}, 20*time.Second)
	// A bound against a hang for the rest of the test, the wait below
	// and what follows it included.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	testenv.Eventually(t, 20*time.Second, func() bool {
		dls, err := bus.DeadLetters(ctx, 10)
		require.NoError(t, err)
		return len(dls) == 3
	}, "both messages dead-lettered beside the garbage")

	failing.Store(false)
	n, err := bus.ReplayDeadLetters(ctx, 10)
	require.ErrorIs(t, err, mq.ErrNotReplayable)
	require.ErrorContains(t, err, "garbage")
	require.Equal(t, 2, n, "the garbage does not hold back the dead letters behind it")
	mine.waitAll(t, []string{"plain", "keyed"}, 20*time.Second)

	// The other service's queue is FIFO with one worker: a replayed copy
	// would be handled before this.
	require.NoError(t, bus.Publish(topic, []byte("sentinel")))
	theirs.waitAll(t, []string{"sentinel"}, 20*time.Second)
	require.Equal(t, 1, theirs.count("plain"), "the other service does not receive the replay")
	dls, err := bus.DeadLetters(ctx, 10)
	require.NoError(t, err)
	require.Len(t, dls, 1, "the undecodable dead letter stays")
	require.True(t, strings.Contains(dls[0].Err.Error(), "decode") || dls[0].Message == nil)
}

// An instance that starts with fewer subscriptions (a rolling deploy, a
// rollback) does not unbind a topic that a running instance of the service
// still consumes.
func TestRestartKeepsTopicsALiveInstanceConsumes(t *testing.T) {
	e := newEnv(t)
	kept, shared := e.svc+".kept", e.svc+".shared"
	running := newRecorder()
	e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) {
		b.Subscribe(kept).Handler(running.handle)
		b.Subscribe(shared).Handler(running.handle)
	})
	other := newRecorder()
	e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) { b.Subscribe(shared).Handler(other.handle) })

	pub := e.start(e.svc, e.url, testOptions(t), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, pub.PublishSync(ctx, message.New(kept, []byte("still consumed"))),
		"the running instance's topic stays bound")
	testenv.Eventually(t, 20*time.Second, func() bool {
		return running.count("still consumed")+other.count("still consumed") == 1
	}, "handled once by the service")
}

// A topic consumed as Ordered is unbound from the service queue whatever
// the record says: an upgrade from a version that kept no record, or an
// instance of an older version that bound it again, leaves no double
// delivery behind.
func TestOrderedTopicLeavesTheServiceQueueWithoutARecord(t *testing.T) {
	e := newEnv(t)
	topic, plain := e.svc+".o", e.svc+".p"
	testenv.DropQueues(t, amqp.Queues(mq.Config{Service: e.svc, Ordered: []string{topic}})...)
	// What an older version left: the service queue bound to the topic.
	ch := e.channel()
	require.NoError(t, ch.ExchangeDeclare("final", "direct", true, false, false, false, nil))
	_, err := ch.QueueDeclare("final."+e.svc, true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind("final."+e.svc, topic, "final", false, nil))
	require.NoError(t, ch.QueueBind("final."+e.svc, topic+"#3", "final", false, nil))

	rec := newRecorder()
	b := e.start(e.svc, e.url, testOptions(t).WithNumSubscriber(1), func(b *final.Bus) {
		b.Subscribe(topic).Ordered().Handler(rec.handle)
		b.Subscribe(plain).Handler(rec.handle)
	})
	var want []string
	for i := 0; i < 20; i++ {
		ref := fmt.Sprintf("m%d", i)
		want = append(want, ref)
		require.NoError(t, b.PublishMessage(message.New(topic, []byte(ref), message.WithKey(ref))))
	}
	require.NoError(t, b.Publish(topic, []byte("unkeyed")))
	want = append(want, "unkeyed")
	rec.waitAll(t, want, 20*time.Second)
	// The service queue is FIFO with one worker: a copy that reached it
	// would be handled before this.
	require.NoError(t, b.Publish(plain, []byte("sentinel")))
	rec.waitAll(t, []string{"sentinel"}, 20*time.Second)
	for _, ref := range want {
		require.Equal(t, 1, rec.count(ref), "%s handled once", ref)
	}
}

// Instances of a service starting at the same time all start: recording
// their subscriptions does not deadlock one of them out.
func TestConcurrentStartsRecordTheirSubscriptions(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".t"
	const n = 4
	buses := make([]*final.Bus, n)
	errs := make(chan error, n)
	for i := range buses {
		buses[i] = final.New(e.svc, e.db, amqp.NewProvider(e.url), testOptions(t))
		buses[i].Subscribe(topic).Handler(func(*final.Context) error { return nil })
	}
	for _, b := range buses {
		go func() { errs <- b.Start() }()
	}
	for range buses {
		require.NoError(t, <-errs)
	}
	for _, b := range buses {
		require.NoError(t, b.Shutdown())
	}
}
