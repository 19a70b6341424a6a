package final_test

import (
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq/amqp"
	"github.com/finalbus/final/mq/memory"
)

func TestBadInputGetsSentinelErrors(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".t"
	b := e.start(e.svc, e.url, testOptions(t).WithMaxPayloadBytes(1024), nil)
	doneTx, err := e.db.Begin()
	require.NoError(t, err)
	require.NoError(t, doneTx.Rollback())

	cases := []struct {
		name string
		err  error
		want error
	}{
		{"payload over limit", b.Publish(topic, make([]byte, 1025)), final.ErrPayloadTooLarge},
		{"empty topic", b.Publish("", nil), final.ErrInvalidTopic},
		{"hostile topic", b.Publish("t'; DROP TABLE x; --", nil), final.ErrInvalidTopic},
		{"topic too long", b.Publish(strings.Repeat("a", 251), nil), final.ErrInvalidTopic},
		{"nil message", b.PublishMessage(nil), final.ErrInvalidPolicy},
		{"delay without outbox", b.Publish(topic, nil, message.WithDelay(time.Second), message.WithConfirm(false)), final.ErrInvalidPolicy},
		{"negative ttl", b.Publish(topic, nil, message.WithTTL(-time.Second)), final.ErrInvalidPolicy},
		{"nil tx", b.Transaction(nil, func(*final.TxBus) error { return nil }), final.ErrNilTx},
		{"finished tx", b.Transaction(doneTx, func(tb *final.TxBus) error { return tb.Publish(topic, nil) }), final.ErrTxDone},
		{"finished tx matches sql too", b.WithTx(doneTx).Publish(topic, nil), sql.ErrTxDone},
		{"publish on nil WithTx", b.WithTx(nil).Publish(topic, nil), final.ErrNilTx},
		{"subscribe after start", b.Subscribe(topic).Handler(func(*final.Context) error { return nil }), final.ErrStarted},
		{"start twice", b.Start(), final.ErrStarted},
	}
	for _, c := range cases {
		require.ErrorIs(t, c.err, c.want, c.name)
	}
	require.Zero(t, e.outboxRows(), "refused messages leave no rows")

	require.NoError(t, b.Shutdown())
	require.NoError(t, b.Shutdown(), "Shutdown is idempotent")
	require.ErrorIs(t, b.Publish(topic, nil), final.ErrClosed)
	tx, err := e.db.Begin()
	require.NoError(t, err)
	defer tx.Rollback()
	require.ErrorIs(t, b.WithTx(tx).Publish(topic, nil), final.ErrClosed)
	require.ErrorIs(t, b.Start(), final.ErrClosed)
}

func TestStartRefusesBadConfiguration(t *testing.T) {
	db := testenv.DB(t)
	p := memory.NewBroker().Provider()
	noop := func(*final.Context) error { return nil }
	cases := []struct {
		name string
		bus  func() *final.Bus
		want error
	}{
		{"nil db", func() *final.Bus { return final.New("svc", nil, p, testOptions(t)) }, final.ErrNilDB},
		{"nil provider", func() *final.Bus { return final.New("svc", db, nil, testOptions(t)) }, final.ErrNilProvider},
		{"hostile service", func() *final.Bus { return final.New("svc`; DROP TABLE users; --", db, p, testOptions(t)) }, final.ErrInvalidService},
		{"empty service", func() *final.Bus { return final.New("", db, p, testOptions(t)) }, final.ErrInvalidService},
		{"long service", func() *final.Bus { return final.New(strings.Repeat("s", 49), db, p, testOptions(t)) }, final.ErrInvalidService},
		// Its table's file name would be 257 bytes ('.' and '-' take five).
		{"service of only dots and dashes", func() *final.Bus { return final.New(strings.Repeat(".-", 24), db, p, testOptions(t)) }, final.ErrInvalidService},
		{"negative retry", func() *final.Bus { return final.New("svc", db, p, testOptions(t).WithRetryCount(-1)) }, final.ErrInvalidOption},
		{"lease not above timeout", func() *final.Bus {
			return final.New("svc", db, p, testOptions(t).WithOutboxLease(time.Second).WithPublishTimeout(time.Second))
		}, final.ErrInvalidOption},
		{"zero subscribers", func() *final.Bus { return final.New("svc", db, p, testOptions(t).WithNumSubscriber(0)) }, final.ErrInvalidOption},
		{"no unconfirmed publish allowed", func() *final.Bus { return final.New("svc", db, p, testOptions(t).WithMaxUnconfirmed(0)) }, final.ErrInvalidOption},
		{"negative ack linger", func() *final.Bus { return final.New("svc", db, p, testOptions(t).WithAckLinger(-time.Second)) }, final.ErrInvalidOption},
		{"invalid subscription topic", func() *final.Bus {
			b := final.New("svc", db, p, testOptions(t))
			b.Subscribe("bad topic").Handler(noop)
			return b
		}, final.ErrInvalidTopic},
		{"duplicate subscription", func() *final.Bus {
			b := final.New("svc", db, p, testOptions(t))
			b.Subscribe("t").Handler(noop)
			b.Subscribe("t").Handler(noop)
			return b
		}, final.ErrDuplicateSubscription},
		{"nil handler", func() *final.Bus {
			b := final.New("svc", db, p, testOptions(t))
			b.Subscribe("t").Handler(nil)
			return b
		}, final.ErrNilHandler},
	}
	for _, c := range cases {
		b := c.bus()
		require.ErrorIs(t, b.Start(), c.want, c.name)
		require.ErrorIs(t, b.Publish("t", nil), final.ErrNotStarted, c.name)
		require.NoError(t, b.Shutdown(), c.name)
	}
	err := final.New("svc", db, p, testOptions(t).WithRetryCount(-1)).Start()
	require.ErrorContains(t, err, "RetryCount", "the error names the option")
}

func TestStartFailsCleanlyWhenServicesAreUnreachable(t *testing.T) {
	e := newEnv(t)
	deadBroker := amqp.NewProvider("amqp://guest:guest@127.0.0.1:1/", amqp.WithDialTimeout(time.Second))
	b := final.New(e.svc, e.db, deadBroker, testOptions(t))
	require.Error(t, b.Start(), "broker unreachable")
	require.NoError(t, b.Shutdown())

	deadDB, err := sql.Open("mysql", "root@tcp(127.0.0.1:1)/test?timeout=1s")
	require.NoError(t, err)
	defer deadDB.Close()
	b = final.New(e.svc, deadDB, amqp.NewProvider(e.url), testOptions(t))
	require.ErrorContains(t, b.Start(), "database unreachable")
	require.NoError(t, b.Shutdown())
}

func TestServiceNameWithDashWorksAndUsesAncestorTableName(t *testing.T) {
	e := newEnv(t)
	svc := "order-svc-" + e.svc
	testenv.DropService(t, e.db, svc)
	t.Cleanup(func() { testenv.DropService(t, e.db, svc) })
	topic := "order.created"
	rec := newRecorder()
	b := e.start(svc, e.url, testOptions(t), func(b *final.Bus) { b.Subscribe(topic).Handler(rec.handle) })
	require.NoError(t, b.Publish(topic, []byte("dash")))
	rec.waitAll(t, []string{"dash"}, 10*time.Second)
	var name string
	require.NoError(t, e.db.QueryRow("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
		"final_"+svc+"_outbox").Scan(&name))
}
