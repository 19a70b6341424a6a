package final_test

import (
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq/memory"
)

// publishTx is database.publishTx on MariaDB.
func publishTx(b *final.Bus, db *sql.DB, table, topic, ref string, fail error) error {
	return mariaDB.publishTx(b, db, table, topic, ref, fail)
}

func TestTransactionCommitsAndRollsBackAtomically(t *testing.T) {
	forEachDB(t, testTransactionCommitsAndRollsBackAtomically)
}

func testTransactionCommitsAndRollsBackAtomically(t *testing.T, e *env) {
	table := e.business()
	topic := e.svc + ".created"
	rec := newRecorder()
	b := e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) { b.Subscribe(topic).Handler(rec.handle) })

	var committed, rolledBack []string
	for i := 0; i < 50; i++ {
		ref := fmt.Sprintf("ok-%d", i)
		require.NoError(t, e.publishTx(b, e.db, table, topic, ref, nil))
		committed = append(committed, ref)

		ref = fmt.Sprintf("rollback-%d", i)
		boom := errors.New("business rule failed")
		require.ErrorIs(t, e.publishTx(b, e.db, table, topic, ref, boom), boom)
		rolledBack = append(rolledBack, ref)
	}
	// A panic in fn rolls back and is re-raised to the caller.
	tx, err := e.db.Begin()
	require.NoError(t, err)
	require.PanicsWithValue(t, "kaboom", func() {
		_ = b.Transaction(tx, func(txBus *final.TxBus) error {
			_, _ = tx.Exec("INSERT INTO " + e.quote(table) + " (ref) VALUES ('panicked')")
			require.NoError(t, txBus.Publish(topic, []byte("panicked")))
			panic("kaboom")
		})
	})
	rolledBack = append(rolledBack, "panicked")
	require.ErrorIs(t, tx.Commit(), sql.ErrTxDone, "the panicking transaction must have been rolled back")

	// A marker committed last: once it and every committed message are in,
	// nothing rolled back can still be on its way (it never reached the outbox).
	require.NoError(t, e.publishTx(b, e.db, table, topic, "marker", nil))
	committed = append(committed, "marker")
	rec.waitAll(t, committed, 30*time.Second)
	testenv.Eventually(t, 10*time.Second, func() bool { return e.outboxRows() == 0 }, "outbox empty")

	for _, ref := range rolledBack {
		require.Zero(t, rec.count(ref), "rolled-back message %s escaped", ref)
	}
	got := rec.tally(e.committedRefs(table))
	t.Logf("rollback case on %s: %s rolled_back=%d outbox_left=%d", e.name, got, len(rolledBack), e.outboxRows())
	require.Zero(t, got.lost)
	require.Zero(t, got.phantom)
}

func TestWithTxCommitAndRollBack(t *testing.T) { forEachDB(t, testWithTxCommitAndRollBack) }

func testWithTxCommitAndRollBack(t *testing.T, e *env) {
	topic := e.svc + ".t"
	rec := newRecorder()
	b := e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) { b.Subscribe(topic).Handler(rec.handle) })

	tx, err := e.db.Begin()
	require.NoError(t, err)
	txBus := b.WithTx(tx)
	require.NoError(t, txBus.Publish(topic, []byte("rolled")))
	require.NoError(t, txBus.RollBack())
	require.ErrorIs(t, txBus.Publish(topic, []byte("late")), final.ErrTxDone)
	require.ErrorIs(t, txBus.Commit(), final.ErrTxDone)

	tx, err = e.db.Begin()
	require.NoError(t, err)
	txBus = b.WithTx(tx)
	require.NoError(t, txBus.Publish(topic, []byte("committed")))
	require.NoError(t, txBus.Commit())
	require.ErrorIs(t, txBus.RollBack(), final.ErrTxDone)

	rec.waitAll(t, []string{"committed"}, 10*time.Second)
	require.Zero(t, rec.count("rolled"))
}

// A transaction the caller commits itself (not through TxBus) skips the
// fast path; the relay must still send its messages.
func TestRelaySendsRowsCommittedOutsideTxBus(t *testing.T) {
	forEachDB(t, testRelaySendsRowsCommittedOutsideTxBus)
}

func testRelaySendsRowsCommittedOutsideTxBus(t *testing.T, e *env) {
	topic := e.svc + ".t"
	rec := newRecorder()
	opt := testOptions(t).WithOutboxScanAgoTime(200 * time.Millisecond).WithOutboxScanInterval(50 * time.Millisecond)
	b := e.start(e.svc, e.url, opt, func(b *final.Bus) { b.Subscribe(topic).Handler(rec.handle) })

	tx, err := e.db.Begin()
	require.NoError(t, err)
	require.NoError(t, b.WithTx(tx).Publish(topic, []byte("by-relay")))
	require.NoError(t, tx.Commit())
	rec.waitAll(t, []string{"by-relay"}, 10*time.Second)
	testenv.Eventually(t, 10*time.Second, func() bool { return e.outboxRows() == 0 }, "outbox empty")
}

// With OutboxScanAgoTime of an hour only the after-commit fast path can
// deliver, and the confirmed rows must be deleted.
func TestFastPathDeliversAndDeletesWithoutRelay(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".t"
	rec := newRecorder()
	opt := testOptions(t).WithOutboxScanAgoTime(time.Hour).WithOutboxLease(2 * time.Hour)
	b := e.start(e.svc, e.url, opt, func(b *final.Bus) { b.Subscribe(topic).Handler(rec.handle) })
	var refs []string
	for i := 0; i < 300; i++ {
		ref := fmt.Sprintf("m%d", i)
		refs = append(refs, ref)
		require.NoError(t, b.Publish(topic, []byte(ref)))
	}
	rec.waitAll(t, refs, 20*time.Second)
	testenv.Eventually(t, 10*time.Second, func() bool { return e.outboxRows() == 0 }, "confirmed rows deleted")
}

func TestHeadersKeyAndUUIDTravelEndToEnd(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".t"
	got := make(chan *final.Context, 1)
	b := e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) {
		b.Subscribe(topic).Handler(func(c *final.Context) error { got <- c; return nil })
	})
	m := message.New(topic, []byte("with-headers"))
	m.UUID = "0190e6b8-1111-7000-8000-000000000001"
	m.Key = "customer-42"
	m.Header.Set("trace-id", "abc-123")
	m.Header.Set("attempt", 3)
	tx, err := e.db.Begin()
	require.NoError(t, err)
	require.NoError(t, b.Transaction(tx, func(txBus *final.TxBus) error { return txBus.PublishMessage(m) }))
	select {
	case c := <-got:
		require.Equal(t, m.UUID, c.Message.UUID)
		require.Equal(t, topic, c.Topic)
		require.Equal(t, "customer-42", c.Key)
		require.Equal(t, "abc-123", c.Message.Header.GetString("trace-id"))
		require.EqualValues(t, 3, c.Message.Header.Get("attempt"))
		require.Equal(t, 1, c.Attempt)
	case <-time.After(10 * time.Second):
		t.Fatal("not delivered")
	}
}

// What is delivered is what the transaction stored, even if the caller
// reuses its message before the commit.
func TestMessageReusedAfterPublishIsDeliveredAsStored(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".t"
	got := make(chan *message.Message, 4)
	b := e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) {
		b.Subscribe(topic).Handler(func(c *final.Context) error { got <- c.Message; return nil })
	})
	tx, err := e.db.Begin()
	require.NoError(t, err)
	require.NoError(t, b.Transaction(tx, func(txBus *final.TxBus) error {
		for _, confirm := range []bool{true, false} {
			m := message.New(topic, []byte(fmt.Sprintf("original-%v", confirm)), message.WithConfirm(confirm))
			m.Header.Set("v", "original")
			if err := txBus.PublishMessage(m); err != nil {
				return err
			}
			m.Payload = []byte("mutated")
			m.Header.Set("v", "mutated")
			m.Topic = "elsewhere"
		}
		return nil
	}))
	for i := 0; i < 2; i++ {
		select {
		case m := <-got:
			require.Contains(t, string(m.Payload), "original-")
			require.Equal(t, "original", m.Header.GetString("v"))
		case <-time.After(10 * time.Second):
			t.Fatal("not delivered")
		}
	}
}

// TxBus.Outbox reads, in the transaction, the messages it published, before
// the commit; a TxBus that has ended, or a bus not started, cannot read.
func TestTxBusOutboxSeesTheTransaction(t *testing.T) { forEachDB(t, testTxBusOutbox) }

func testTxBusOutbox(t *testing.T, e *env) {
	topic := e.svc + ".t"
	idle := final.New(e.svc, e.db, memory.NewBroker().Provider(), testOptions(t))
	tx, err := e.db.Begin()
	require.NoError(t, err)
	_, err = idle.WithTx(tx).Outbox(t.Context())
	require.ErrorIs(t, err, final.ErrNotStarted)
	require.NoError(t, tx.Rollback())

	b := e.start(e.svc, e.url, testOptions(t), nil)
	tx, err = e.db.Begin()
	require.NoError(t, err)
	txBus := b.WithTx(tx)
	require.NoError(t, txBus.Publish(topic, []byte("one")))
	require.NoError(t, txBus.PublishMessage(message.New(topic, []byte("two"), message.WithKey("k"))))
	got, err := txBus.Outbox(t.Context())
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, "one", string(got[0].Payload))
	require.Equal(t, "two", string(got[1].Payload))
	require.Equal(t, "k", got[1].Key)
	require.NoError(t, txBus.RollBack())
	_, err = txBus.Outbox(t.Context())
	require.ErrorIs(t, err, final.ErrTxDone)
}
