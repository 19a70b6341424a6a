package final_test

import (
	"database/sql"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
)

// backlog leaves n committed rows in svc's outbox that no fast path will
// send: they are committed on the *sql.Tx directly.
func backlog(t *testing.T, e *env, topic string, n int) []string {
	t.Helper()
	pub := e.start(e.svc, e.url, testOptions(t).WithOutboxScanAgoTime(time.Hour), nil)
	refs := make([]string, 0, n)
	tx, err := e.db.Begin()
	require.NoError(t, err)
	txBus := pub.WithTx(tx)
	for i := 0; i < n; i++ {
		ref := fmt.Sprintf("b%d", i)
		refs = append(refs, ref)
		require.NoError(t, txBus.Publish(topic, []byte(ref)))
	}
	require.NoError(t, tx.Commit())
	require.NoError(t, pub.Shutdown())
	makeAvailable(t, e)
	return refs
}

// makeAvailable makes every row of e's outbox due now.
func makeAvailable(t *testing.T, e *env) {
	_, err := e.db.Exec("UPDATE " + e.quote("final_"+e.svc+"_outbox") + " SET available_at = " + e.now)
	require.NoError(t, err)
}

// With an hour between scans, a 2,000-row backlog drains only if each full
// batch is followed at once by the next.
func TestRelayChainsFullBatches(t *testing.T) { forEachDB(t, testRelayChainsFullBatches) }

func testRelayChainsFullBatches(t *testing.T, e *env) {
	topic := e.svc + ".t"
	rec := newRecorder()
	// Bind the queue first so the backlog is routable.
	e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) { b.Subscribe(topic).Handler(rec.handle) }).Shutdown()
	refs := backlog(t, e, topic, 2000)
	opt := testOptions(t).WithOutboxScanInterval(time.Hour).WithOutboxScanOffset(100)
	e.start(e.svc, e.url, opt, func(b *final.Bus) { b.Subscribe(topic).Handler(rec.handle) })
	rec.waitAll(t, refs, 30*time.Second)
	testenv.Eventually(t, 10*time.Second, func() bool { return e.outboxRows() == 0 }, "outbox drained")
}

// Two and three instances relaying one table never send a row at the same
// time; without faults no row is sent twice at all.
func TestRelaysOnOneTableSplitTheBacklog(t *testing.T) {
	eachDatabase(t, func(t *testing.T, d database) {
		for _, instances := range []int{2, 3} {
			t.Run(fmt.Sprint(instances), func(t *testing.T) {
				e := newEnvOn(t, d)
				topic := e.svc + ".t"
				rec := newRecorder()
				e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) { b.Subscribe(topic).Handler(rec.handle) }).Shutdown()
				refs := backlog(t, e, topic, 3000)
				opt := testOptions(t).WithOutboxScanOffset(50).WithOutboxScanInterval(20 * time.Millisecond)
				for i := 0; i < instances; i++ {
					e.start(e.svc, e.url, opt, func(b *final.Bus) { b.Subscribe(topic).Handler(rec.handle) })
				}
				rec.waitAll(t, refs, 60*time.Second)
				testenv.Eventually(t, 10*time.Second, func() bool { return e.outboxRows() == 0 }, "outbox drained")
				got := rec.tally(refs)
				t.Logf("%d relays on %s: %s outbox_left=%d", instances, d.name, got, e.outboxRows())
				require.Zero(t, got.duplicates, "a row was sent twice")
			})
		}
	})
}

// A message no queue is bound to comes back from the broker (mandatory
// publish); it stays in the outbox with its attempts and last error, and is
// delivered once a subscriber binds the topic.
func TestUnroutableMessageRetriedUntilRoutable(t *testing.T) {
	forEachDB(t, testUnroutableMessageRetriedUntilRoutable)
}

func testUnroutableMessageRetriedUntilRoutable(t *testing.T, e *env) {
	topic := e.svc + ".later"
	opt := testOptions(t).WithOutboxRetry(20*time.Millisecond, 200*time.Millisecond).WithOutboxScanInterval(20 * time.Millisecond)
	pub := e.start(e.svc, e.url, opt, nil)
	require.NoError(t, pub.Publish(topic, []byte("waits")))

	var attempts int
	var lastErr sql.NullString
	testenv.Eventually(t, 20*time.Second, func() bool {
		err := e.db.QueryRow("SELECT attempts, last_error FROM "+e.quote("final_"+e.svc+"_outbox")).Scan(&attempts, &lastErr)
		return err == nil && attempts >= 3
	}, "the row records failed attempts")
	require.True(t, strings.Contains(lastErr.String, "unroutable"), "last_error = %q", lastErr.String)

	rec := newRecorder()
	consumer := e.service()
	e.start(consumer, e.url, testOptions(t), func(b *final.Bus) { b.Subscribe(topic).Handler(rec.handle) })
	rec.waitAll(t, []string{"waits"}, 20*time.Second)
	testenv.Eventually(t, 10*time.Second, func() bool { return e.outboxRows() == 0 }, "row deleted once confirmed")
}

// Rows committed after their fast-path window (a transaction left open
// longer than half OutboxScanAgoTime; here the window is a nanosecond) are not
// published by the fast path, which could race a relay sending them: they go
// by the relay, every one, once.
func TestRowsPastTheFastPathWindowGoByTheRelay(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".t"
	rec := newRecorder()
	logs := &logBuffer{}
	opt := testOptions(t).WithOutboxScanAgoTime(time.Nanosecond).WithOutboxScanInterval(20 * time.Millisecond)
	opt.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bus log:\n%s", logs.tail(100))
		}
	})
	b := e.start(e.svc, e.url, opt, func(b *final.Bus) { b.Subscribe(topic).Handler(rec.handle) })
	var refs []string
	for tx := 0; tx < 5; tx++ {
		require.NoError(t, b.Transaction(mustBegin(t, e.db), func(txBus *final.TxBus) error {
			for i := 0; i < 10; i++ {
				ref := fmt.Sprintf("late-%d-%d", tx, i)
				refs = append(refs, ref)
				if err := txBus.Publish(topic, []byte(ref)); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	rec.waitAll(t, refs, 30*time.Second)
	testenv.Eventually(t, 10*time.Second, func() bool { return e.outboxRows() == 0 }, "outbox drained")
	require.Equal(t, tally{committed: 50, delivered: 50}, rec.tally(refs))
	require.Contains(t, logs.tail(1000), "row left to the relay", "the fast path sent rows past their window")
}

func mustBegin(t *testing.T, db *sql.DB) *sql.Tx {
	t.Helper()
	tx, err := db.Begin()
	require.NoError(t, err)
	return tx
}

// Many messages no queue is bound to fail together against the real
// broker: every row counts its attempts and ends with the same last_error,
// which names the topic and no message's UUID, so the rows share their
// UPDATE instead of costing one each.
func TestUnroutableRowsShareTheirLastError(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".nobody"
	opt := testOptions(t).WithOutboxRetry(20*time.Millisecond, 100*time.Millisecond).WithOutboxScanInterval(20 * time.Millisecond)
	pub := e.start(e.svc, e.url, opt, nil)
	const n = 100
	uuids := make([]string, 0, n)
	for i := 0; i < n; i++ {
		m := message.New(topic, []byte(fmt.Sprint(i)))
		uuids = append(uuids, m.UUID)
		require.NoError(t, pub.PublishMessage(m))
	}
	table := "`final_" + e.svc + "_outbox`"
	testenv.Eventually(t, 30*time.Second, func() bool {
		var rows, least int
		err := e.db.QueryRow("SELECT COUNT(*), COALESCE(MIN(attempts), 0) FROM "+table).Scan(&rows, &least)
		return err == nil && rows == n && least >= 3
	}, "every row failed three times")
	rows, err := e.db.Query("SELECT DISTINCT last_error FROM " + table)
	require.NoError(t, err)
	defer rows.Close()
	var texts []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		texts = append(texts, s)
	}
	require.NoError(t, rows.Err())
	require.Len(t, texts, 1, "distinct last_error texts of %d unroutable rows, e.g. %q", n, texts[:min(3, len(texts))])
	require.Equal(t, `mq: message unroutable: no queue is bound to topic "`+topic+`"`, texts[0])
	for _, u := range uuids {
		require.NotContains(t, texts[0], u)
	}
}
