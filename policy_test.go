package final_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/message"
)

// WithConfirm(false) bypasses the outbox: inside a transaction it writes
// no row, and is sent only after the commit.
func TestUnconfirmedPublishBypassesOutbox(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".t"
	rec := newRecorder()
	b := e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) { b.Subscribe(topic).Handler(rec.handle) })

	tx, err := e.db.Begin()
	require.NoError(t, err)
	require.NoError(t, b.Transaction(tx, func(txBus *final.TxBus) error {
		require.NoError(t, txBus.Publish(topic, []byte("direct"), message.WithConfirm(false)))
		var n int
		require.NoError(t, tx.QueryRow("SELECT COUNT(*) FROM `final_"+e.svc+"_outbox`").Scan(&n))
		require.Zero(t, n, "an unconfirmed message must not touch the outbox")
		return nil
	}))
	require.NoError(t, b.Publish(topic, []byte("direct-2"), message.WithConfirm(false)))
	rec.waitAll(t, []string{"direct", "direct-2"}, 10*time.Second)

	// Rolled back: never sent.
	tx, err = e.db.Begin()
	require.NoError(t, err)
	txBus := b.WithTx(tx)
	require.NoError(t, txBus.Publish(topic, []byte("direct-rolled"), message.WithConfirm(false)))
	require.NoError(t, txBus.RollBack())
	require.NoError(t, b.Publish(topic, []byte("marker"), message.WithConfirm(false)))
	rec.waitAll(t, []string{"marker"}, 10*time.Second)
	require.Zero(t, rec.count("direct-rolled"))
}

// A delayed message stays in the outbox until it is due.
func TestDelayedMessageWaitsInOutbox(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".t"
	arrived := make(chan time.Time, 1)
	opt := testOptions(t).WithOutboxScanInterval(50 * time.Millisecond)
	b := e.start(e.svc, e.url, opt, func(b *final.Bus) {
		b.Subscribe(topic).Handler(func(c *final.Context) error { arrived <- time.Now(); return nil })
	})
	const delay = 1500 * time.Millisecond
	published := time.Now()
	require.NoError(t, b.Publish(topic, []byte("later"), message.WithDelay(delay)))
	require.Equal(t, 1, e.outboxRows(), "a delayed message waits in the outbox")
	select {
	case at := <-arrived:
		require.GreaterOrEqual(t, at.Sub(published), delay, "delivered before it was due")
	case <-time.After(20 * time.Second):
		t.Fatal("delayed message never delivered")
	}
}
