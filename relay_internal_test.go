package final

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/memory"
	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/mysql"
)

// The relay's window for a batch ends PublishTimeout before its lease,
// measured from before the claim.
func TestRelaySendByEndsBeforeTheLease(t *testing.T) {
	o := DefaultOptions()
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	store := &scriptedStore{sizes: []int{1}}
	d := newDispatcher(context.Background(), memory.NewBroker().Provider(), newAcker(context.Background(), store, o), o)
	r := newRelay(store, d, "me", o)
	before := time.Now()
	if _, err := r.scan(); err != nil {
		t.Fatalf("scan: %v", err)
	}
	after := time.Now()
	got := <-d.queue // the loops are not running: the row waits in the queue
	window := o.OutboxLease - o.PublishTimeout
	if got.sendBy.Before(before.Add(window)) || got.sendBy.After(after.Add(window)) {
		t.Fatalf("sendBy %v not within [%v, %v]", got.sendBy, before.Add(window), after.Add(window))
	}
}

// scriptedStore hands out one batch of each scripted size per claim, then
// nothing.
type scriptedStore struct {
	countingStore
	mu    sync.Mutex
	sizes []int
	calls int
}

func (s *scriptedStore) Claim(context.Context, string, int, int, time.Duration) ([]outbox.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if len(s.sizes) == 0 {
		return nil, nil
	}
	recs := make([]outbox.Record, s.sizes[0])
	s.sizes = s.sizes[1:]
	for i := range recs {
		recs[i] = outbox.Record{ID: int64(s.calls*1000 + i), Message: message.New("t", nil), Body: []byte("b")}
	}
	return recs, nil
}

func (s *scriptedStore) left() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sizes)
}

// SKIP LOCKED can cut a claim short while rows are still due, so the first
// short batches after a full one are followed at once by another claim, not
// by OutboxScanInterval (an hour here).
func TestRelayLooksAgainAfterAShortBatch(t *testing.T) {
	o := DefaultOptions().WithOutboxScanOffset(10).WithOutboxScanInterval(time.Hour)
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	store := &scriptedStore{sizes: []int{10, 3, 10, 0, 4}}
	d := newDispatcher(context.Background(), memory.NewBroker().Provider(), newAcker(context.Background(), store, o), o)
	r := newRelay(store, d, "me", o)
	r.start()
	defer r.stop()
	testenv.Eventually(t, 10*time.Second, func() bool { return store.left() == 0 }, "every scripted batch claimed")
}

// runPipeline starts an acker, a dispatcher and a relay on store and p as
// Start does, and stops them as Shutdown does when the test ends.
func runPipeline(t *testing.T, store outbox.Store, p mq.IProvider, o Options) {
	t.Helper()
	runPipelineSplitting(t, store, nil, p, o)
}

// runPipelineSplitting is runPipeline whose acker inserts the rows of a
// split pack in transactions of begin (nil: on their own), as a bus's does
// in its database's.
func runPipelineSplitting(t *testing.T, store outbox.Store, begin outbox.Beginner, p mq.IProvider, o Options) {
	t.Helper()
	a := newAcker(context.Background(), store, o)
	a.begin = begin
	d := newDispatcher(context.Background(), p, a, o)
	r := newRelay(store, d, "me", o)
	a.start(1)
	d.start()
	r.start()
	t.Cleanup(func() {
		r.stop()
		d.close()
		d.wait()
		r.finishHeld()
		a.closeAndWait()
	})
}

// memoryProvider is an in-memory provider of a service subscribed to topic
// "bound" only, closed when the test ends.
func memoryProvider(t *testing.T, o Options) *memory.Provider {
	t.Helper()
	p := memory.NewBroker().Provider()
	if err := p.Init(context.Background(), mq.Config{Service: "svc", Topics: []string{"bound"}, Logger: o.Logger}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// attempts returns the attempts column of each of ids.
func attempts(t *testing.T, db *sql.DB, table string, ids ...int64) []int {
	t.Helper()
	out := make([]int, len(ids))
	for i, id := range ids {
		if err := db.QueryRow("SELECT attempts FROM `"+table+"` WHERE id = ?", id).Scan(&out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// Rows of a key held back behind a failing first row were never sent, so
// they count no attempt: the relay gives them back to the table, and only
// the first row's attempts grow round after round.
func TestHeldBackRowsCountNoAttempt(t *testing.T) {
	db := testenv.DB(t)
	store := mysqlStore(t, db, mysql.Options{RetryBase: 10 * time.Millisecond, RetryMax: 40 * time.Millisecond})
	o := DefaultOptions().WithOutboxScanInterval(10 * time.Millisecond)
	o.Logger = discardLogger()
	// The first row of the key is unroutable; the in-memory broker then
	// refuses the later ones as out of order, or the key's order holds
	// them back: they are never published.
	var rows []int64
	for i := 0; i < 3; i++ {
		rows = append(rows, insertRow(t, store, message.New("nobody", []byte{byte(i)}, message.WithKey("k")), "k"))
	}
	runPipeline(t, store, memoryProvider(t, o), o)
	testenv.Eventually(t, 30*time.Second, func() bool { return attempts(t, db, store.Table(), rows[0])[0] >= 4 },
		"the first row of the key failed four times")
	if got := attempts(t, db, store.Table(), rows[1:]...); got[0] != 0 || got[1] != 0 {
		t.Fatalf("attempts of the held-back rows = %v, want [0 0]: they were never sent", got)
	}
}

// A stored row that cannot be decoded is reported at Warn once, however
// often it is claimed; it stays in the table with its failures counted,
// so its backoff grows to OutboxRetryMax, and last_error says why.
func TestUndecodableRowReportedOnce(t *testing.T) {
	db := testenv.DB(t)
	store := mysqlStore(t, db, mysql.Options{RetryBase: 10 * time.Millisecond, RetryMax: 40 * time.Millisecond})
	res, err := db.Exec("INSERT INTO `"+store.Table()+"` (message, status, create_at) VALUES (?, 0, NOW(3))", []byte{0xc1, 0xff, 0x00})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := res.LastInsertId()
	logs := &logRecords{}
	o := DefaultOptions().WithOutboxScanInterval(10 * time.Millisecond)
	o.Logger = slog.New(logs)
	runPipeline(t, store, memoryProvider(t, o), o)
	testenv.Eventually(t, 30*time.Second, func() bool { return attempts(t, db, store.Table(), id)[0] >= 4 },
		"the row was claimed and failed four times")
	if n := logs.count(slog.LevelWarn, "cannot be decoded"); n != 1 {
		t.Fatalf("%d Warn lines for one undecodable row claimed 4 times, want 1; log:\n%s", n, logs)
	}
	var lastErr string
	if err := db.QueryRow("SELECT last_error FROM `"+store.Table()+"` WHERE id = ?", id).Scan(&lastErr); err != nil {
		t.Fatalf("the row is gone or has no last_error: %v", err)
	}
	t.Logf("last_error: %s", lastErr)
}

// A committed row's fast path may start its publish until the middle of
// its OutboxScanAgoTime window, measured from before its insert: the other
// half is for its confirm and its delete to land before a relay may claim
// the row. Sent up to the window's end, a row that waited in a deep queue
// was confirmed after a relay had claimed it: a duplicate.
func TestCommittedRowsAreSentByTheMiddleOfTheirWindow(t *testing.T) {
	o := DefaultOptions()
	b := &Bus{opt: o, store: &countingStore{}}
	before := time.Now()
	one, err := b.stage(context.Background(), nil, message.New("t", []byte("p")))
	if err != nil {
		t.Fatal(err)
	}
	// Two rows of one message (two topics) and a pack.
	all, err := b.stageAll(context.Background(), nil, []*message.Message{message.New("t", []byte("q")), message.New("u", []byte("r")),
		message.New("v", nil), message.New("v", nil)})
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	half := o.OutboxScanAgoTime / 2
	if len(all) != 3 || len(all[2].pack) != 2 {
		t.Fatalf("stageAll staged %d rows; want 3, a pack of 2 last", len(all))
	}
	for _, got := range []outgoing{*one, all[0], all[1], all[2]} {
		if got.sendBy.Before(before.Add(half)) || got.sendBy.After(after.Add(half)) {
			t.Fatalf("sendBy %v not within [%v, %v]", got.sendBy, before.Add(half), after.Add(half))
		}
	}
}
