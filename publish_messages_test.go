package final_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
)

// PublishMessages writes a whole batch in the transaction: a batch with an
// invalid message writes nothing, a rolled-back batch never escapes, and a
// committed one is delivered once each, delayed and fire-and-forget
// messages among them. With OutboxScanAgoTime of an hour only the fast
// path sends the fresh rows and deletes them by the ids the insert
// returned: a fresh message paired with a delayed row's id would delete
// that row (never delivered) and leave its own behind (the outbox never
// empties). Two fresh rows whose ids were swapped would go unnoticed
// here; the stores' conformance case InsertBatch checks every id.
func TestPublishMessagesWritesTheBatchInTheTransaction(t *testing.T) {
	forEachDB(t, testPublishMessages)
}

func testPublishMessages(t *testing.T, e *env) {
	topic := e.svc + ".t"
	rec := newRecorder()
	opt := testOptions(t).WithOutboxScanAgoTime(time.Hour).WithOutboxLease(2 * time.Hour).WithOutboxScanInterval(50 * time.Millisecond)
	b := e.start(e.svc, e.url, opt, func(b *final.Bus) { b.Subscribe(topic).Handler(rec.handle) })

	batch := func(prefix string, n int) []*message.Message {
		msgs := make([]*message.Message, n)
		for i := range msgs {
			var opts []message.PolicyOption
			switch {
			case i%7 == 3:
				opts = append(opts, message.WithDelay(300*time.Millisecond))
			case i == 5:
				opts = append(opts, message.WithConfirm(false))
			case i%2 == 0:
				opts = append(opts, message.WithKey(prefix+"-k"))
			}
			msgs[i] = message.New(topic, fmt.Appendf(nil, "%s-%d", prefix, i), opts...)
		}
		return msgs
	}
	refs := func(msgs []*message.Message) []string {
		var out []string
		for _, m := range msgs {
			out = append(out, string(m.Payload))
		}
		return out
	}

	tx, err := e.db.Begin()
	require.NoError(t, err)
	txBus := b.WithTx(tx)
	bad := append(batch("bad", 3), message.New("no spaces", []byte("x")))
	require.ErrorIs(t, txBus.PublishMessages(bad...), final.ErrInvalidTopic)
	inTx, err := txBus.Outbox(t.Context())
	require.NoError(t, err)
	require.Empty(t, inTx, "a batch with an invalid message wrote some of it")
	rolled := batch("rolled", 8)
	require.NoError(t, txBus.PublishMessages(rolled...))
	inTx, err = txBus.Outbox(t.Context())
	require.NoError(t, err)
	require.Len(t, inTx, 7, "the batch's rows in the transaction (the fire-and-forget message has none)")
	// rolled-0 … rolled-7 but rolled-5.
	for i, m := range inTx {
		want := i
		if i >= 5 {
			want = i + 1
		}
		require.Equal(t, fmt.Sprintf("rolled-%d", want), string(m.Payload), "row %d", i)
	}
	require.NoError(t, txBus.RollBack())
	require.ErrorIs(t, txBus.PublishMessages(batch("late", 1)...), final.ErrTxDone)

	var committed []string
	for round := range 3 {
		msgs := batch(fmt.Sprintf("ok%d", round), 70) // more than one statement's rows
		tx, err := e.db.Begin()
		require.NoError(t, err)
		require.NoError(t, b.Transaction(tx, func(txBus *final.TxBus) error {
			return txBus.PublishMessages(msgs...)
		}))
		committed = append(committed, refs(msgs)...)
	}
	rec.waitAll(t, committed, 30*time.Second)
	testenv.Eventually(t, 10*time.Second, func() bool { return e.outboxRows() == 0 }, "outbox empty (have %v rows)", lazy(func() any { return e.outboxRows() }))
	got := rec.tally(committed)
	require.Zero(t, got.lost, "%s", got)
	require.Zero(t, got.phantom, "%s: a rolled-back message escaped", got)
	require.Zero(t, got.duplicates, "%s", got)
}

// PublishMessages writes a run of unkeyed, undelayed messages of one topic
// as one row (a pack): here a run of ten, a keyed message, a run of three
// of the same topic and a run of two of another make four rows, which the
// transaction reads back as its sixteen messages in order. Every message
// is then delivered once and the outbox empties. With PackMessages off
// each message is a row of its own.
func TestPublishMessagesPacksRuns(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		for _, pack := range []bool{true, false} {
			t.Run(fmt.Sprint("pack=", pack), func(t *testing.T) { testPublishMessagesPacks(t, e, pack) })
		}
	})
}

func testPublishMessagesPacks(t *testing.T, e *env, pack bool) {
	svc := e.service()
	e.svc = svc // outboxRows counts this bus's table
	rec := newRecorder()
	opt := testOptions(t).WithPackMessages(pack)
	b := e.start(svc, e.url, opt, func(b *final.Bus) {
		b.Subscribe(svc + ".t").Handler(rec.handle)
		b.Subscribe(svc + ".u").Handler(rec.handle)
	})
	var msgs []*message.Message
	add := func(topic string, n int, opts ...message.PolicyOption) {
		for range n {
			msgs = append(msgs, message.New(svc+topic, fmt.Appendf(nil, "%s-%d", svc, len(msgs)), opts...))
		}
	}
	add(".t", 10)
	add(".t", 1, message.WithKey("k"))
	add(".t", 3)
	add(".u", 2)
	var refs []string
	for _, m := range msgs {
		refs = append(refs, string(m.Payload))
	}

	tx, err := e.db.Begin()
	require.NoError(t, err)
	txBus := b.WithTx(tx)
	require.NoError(t, txBus.PublishMessages(msgs...))
	var rows int
	require.NoError(t, tx.QueryRow("SELECT COUNT(*) FROM "+e.quote("final_"+svc+"_outbox")).Scan(&rows))
	want := map[bool]int{true: 4, false: len(msgs)}[pack]
	require.Equal(t, want, rows, "outbox rows in the transaction")
	inTx, err := txBus.Outbox(t.Context())
	require.NoError(t, err)
	require.Len(t, inTx, len(msgs))
	for i, m := range inTx {
		require.Equal(t, msgs[i].UUID, m.UUID, "message %d", i)
		require.Equal(t, refs[i], string(m.Payload), "message %d", i)
	}
	require.NoError(t, txBus.Commit())

	rec.waitAll(t, refs, 30*time.Second)
	testenv.Eventually(t, 10*time.Second, func() bool { return e.outboxRows() == 0 }, "outbox empty (have %v rows)", lazy(func() any { return e.outboxRows() }))
	got := rec.tally(refs)
	require.Zero(t, got.lost, "%s", got)
	require.Zero(t, got.duplicates, "%s", got)
}
