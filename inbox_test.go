package final_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
)

// ackSpy wraps the AMQP provider: it counts acks per message UUID and, with
// loseFirstAck, turns each message's first ack into a requeue, as if the
// consumer died after its handler committed and before the ack left.
type ackSpy struct {
	*amqp.Provider
	loseFirstAck bool

	mu   sync.Mutex
	acks map[string]int
	lost map[string]bool
}

func newAckSpy(url string, loseFirstAck bool) *ackSpy {
	return &ackSpy{Provider: amqp.NewProvider(url), loseFirstAck: loseFirstAck, acks: map[string]int{}, lost: map[string]bool{}}
}

func (s *ackSpy) Consume(ctx context.Context) (<-chan mq.Delivery, error) {
	in, err := s.Provider.Consume(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan mq.Delivery)
	go func() {
		defer close(out)
		for d := range in {
			out <- &spiedDelivery{Delivery: d, spy: s}
		}
	}()
	return out, nil
}

func (s *ackSpy) ackCount(uuid string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acks[uuid]
}

type spiedDelivery struct {
	mq.Delivery
	spy *ackSpy
}

func (d *spiedDelivery) Ack() error {
	m, err := d.Message()
	if err != nil {
		return d.Delivery.Ack()
	}
	d.spy.mu.Lock()
	lose := d.spy.loseFirstAck && !d.spy.lost[m.UUID]
	d.spy.lost[m.UUID] = true
	if !lose {
		d.spy.acks[m.UUID]++
	}
	d.spy.mu.Unlock()
	if lose {
		return d.Delivery.Requeue()
	}
	return d.Delivery.Ack()
}

// inboxEnv starts a bus whose topic has an Inbox subscription writing one
// business row per handled message, and counts handler calls.
type inboxEnv struct {
	*env
	spy   *ackSpy
	bus   *final.Bus
	table string
	topic string

	mu    sync.Mutex
	calls map[string]int
}

func startInbox(t *testing.T, loseFirstAck bool, handler func(ie *inboxEnv, c *final.Context) error, more func(ie *inboxEnv)) *inboxEnv {
	e := newEnv(t)
	ie := &inboxEnv{env: e, table: e.business(), topic: e.svc + ".t", calls: map[string]int{}}
	t.Cleanup(func() {
		_, _ = e.db.Exec("DROP TABLE IF EXISTS `final_" + e.svc + "_inbox`")
		_, _ = e.db.Exec("DELETE FROM final_schema_migrations WHERE table_name = ?", "final_"+e.svc+"_inbox")
	})
	ie.spy = newAckSpy(e.url, loseFirstAck)
	ie.bus = final.New(e.svc, e.db, ie.spy, testOptions(t).WithRetryInterval(10*time.Millisecond))
	ie.bus.Subscribe(ie.topic).Inbox().Handler(func(c *final.Context) error {
		ie.mu.Lock()
		ie.calls[c.Message.UUID]++
		ie.mu.Unlock()
		if _, err := c.Tx().Exec("INSERT INTO `"+ie.table+"` (ref) VALUES (?)", c.Message.UUID); err != nil {
			return err
		}
		return handler(ie, c)
	})
	if more != nil {
		more(ie)
	}
	require.NoError(t, ie.bus.Start())
	t.Cleanup(func() { require.NoError(t, ie.bus.Shutdown()) })
	return ie
}

func (ie *inboxEnv) callCount(uuid string) int {
	ie.mu.Lock()
	defer ie.mu.Unlock()
	return ie.calls[uuid]
}

func (ie *inboxEnv) sideEffects(uuid string) int {
	var n int
	require.NoError(ie.t, ie.db.QueryRow("SELECT COUNT(*) FROM `"+ie.table+"` WHERE ref = ?", uuid).Scan(&n))
	return n
}

func ok(*inboxEnv, *final.Context) error { return nil }

// The same message published twice is handled once; the second copy is
// acknowledged without calling the handler.
func TestInboxHandlesADuplicateOnce(t *testing.T) {
	ie := startInbox(t, false, ok, nil)
	m := message.New(ie.topic, []byte("twice"))
	require.NoError(t, ie.bus.PublishMessage(m))
	require.NoError(t, ie.bus.PublishMessage(m))
	testenv.Eventually(t, 20*time.Second, func() bool { return ie.spy.ackCount(m.UUID) == 2 }, "both copies acknowledged")
	require.Equal(t, 1, ie.callCount(m.UUID), "handler calls")
	require.Equal(t, 1, ie.sideEffects(m.UUID), "business rows")
}

// A UUID the publisher chose, reused on two Inbox topics, is two messages:
// each topic's handler runs once. A copy on the same topic is still a
// duplicate, acknowledged without its handler.
func TestInboxRecordIsPerTopic(t *testing.T) {
	var (
		other      string
		mu         sync.Mutex
		otherCalls int
	)
	ie := startInbox(t, false, ok, func(ie *inboxEnv) {
		other = ie.svc + ".other"
		ie.bus.Subscribe(other).Inbox().Handler(func(*final.Context) error {
			mu.Lock()
			otherCalls++
			mu.Unlock()
			return nil
		})
	})
	// The longest UUID a publisher may set.
	id := strings.Repeat("order-42.", final.MaxUUIDLen)[:final.MaxUUIDLen]
	first := message.New(ie.topic, []byte("created"))
	first.UUID = id
	second := message.New(other, []byte("paid"))
	second.UUID = id
	require.NoError(t, ie.bus.PublishMessage(first))
	require.NoError(t, ie.bus.PublishMessage(second))
	require.NoError(t, ie.bus.PublishMessage(first))
	testenv.Eventually(t, 20*time.Second, func() bool { return ie.spy.ackCount(id) == 3 }, "three copies acknowledged")
	require.Equal(t, 1, ie.callCount(id), "handler calls on %s", ie.topic)
	require.Equal(t, 1, ie.sideEffects(id), "business rows of %s", ie.topic)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 1, otherCalls, "handler calls on %s", other)
}

// A UUID longer than an inbox can record is refused at publish, in or
// out of a transaction, rather than failing at every consumer.
func TestPublishRefusesAUUIDTooLongForTheInbox(t *testing.T) {
	ie := startInbox(t, false, ok, nil)
	m := message.New(ie.topic, nil)
	m.UUID = strings.Repeat("u", final.MaxUUIDLen+1)
	err := ie.bus.PublishMessage(m)
	require.ErrorIs(t, err, final.ErrInvalidUUID)
	require.ErrorContains(t, err, "65 bytes, limit 64")

	tx, err := ie.db.Begin()
	require.NoError(t, err)
	defer tx.Rollback()
	require.ErrorIs(t, ie.bus.WithTx(tx).PublishMessage(m), final.ErrInvalidUUID)
	require.NoError(t, tx.Commit())
	require.Zero(t, ie.outboxRows(), "refused messages leave no rows")
}

// A consumer that dies after the handler's commit and before its ack gets
// the message again; the inbox recognises it.
func TestInboxSurvivesALostAck(t *testing.T) {
	ie := startInbox(t, true, ok, nil)
	var ids []string
	for i := 0; i < 20; i++ {
		m := message.New(ie.topic, []byte("once"))
		ids = append(ids, m.UUID)
		require.NoError(t, ie.bus.PublishMessage(m))
	}
	for _, id := range ids {
		testenv.Eventually(t, 20*time.Second, func() bool { return ie.spy.ackCount(id) == 1 }, "redelivered copy acknowledged")
		require.Equal(t, 1, ie.callCount(id), "handler calls for %s", id)
		require.Equal(t, 1, ie.sideEffects(id), "business rows for %s", id)
	}
}

// A failing attempt rolls back its rows, its inbox record and what it
// published; the successful retry's effects happen once.
func TestInboxFailureRollsBackRowsAndPublishes(t *testing.T) {
	rec := newRecorder()
	var next string
	ie := startInbox(t, false, func(ie *inboxEnv, c *final.Context) error {
		if err := c.TxBus().Publish(next, []byte("from "+c.Message.UUID)); err != nil {
			return err
		}
		if c.Attempt < 3 {
			return errors.New("not yet")
		}
		return nil
	}, func(ie *inboxEnv) {
		next = ie.svc + ".chained"
		ie.bus.Subscribe(next).Handler(rec.handle)
	})
	m := message.New(ie.topic, nil)
	require.NoError(t, ie.bus.PublishMessage(m))
	rec.waitAll(t, []string{"from " + m.UUID}, 20*time.Second)
	testenv.Eventually(t, 10*time.Second, func() bool { return ie.spy.ackCount(m.UUID) == 1 }, "acknowledged")
	require.Equal(t, 3, ie.callCount(m.UUID))
	require.Equal(t, 1, ie.sideEffects(m.UUID), "only the successful attempt's row remains")
	require.Equal(t, 1, rec.count("from "+m.UUID), "only the successful attempt's message was sent")
}

func TestInboxRetentionMustCoverRedeliveries(t *testing.T) {
	e := newEnv(t)
	b := final.New(e.svc, e.db, amqp.NewProvider(e.url), testOptions(t).WithInboxRetention(time.Second))
	b.Subscribe(e.svc + ".t").Inbox().Handler(func(*final.Context) error { return nil })
	err := b.Start()
	require.ErrorIs(t, err, final.ErrInvalidOption)
	require.ErrorContains(t, err, "redelivery horizon")

	// Without Inbox subscriptions the retention does not matter.
	plain := final.New(e.svc, e.db, amqp.NewProvider(e.url), testOptions(t).WithInboxRetention(time.Second))
	hasTx := make(chan bool, 1)
	plain.Subscribe(e.svc + ".t").Handler(func(c *final.Context) error {
		hasTx <- c.Tx() != nil || c.TxBus() != nil
		return nil
	})
	require.NoError(t, plain.Start())
	require.NoError(t, plain.Publish(e.svc+".t", nil))
	select {
	case got := <-hasTx:
		require.False(t, got, "a plain subscription has no transaction")
	case <-time.After(10 * time.Second):
		t.Fatal("not delivered")
	}
	require.NoError(t, plain.Shutdown())
}
