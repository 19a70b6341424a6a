package final

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
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

// failStatement is one Store.Fail call.
type failStatement struct {
	owner string
	rows  int
	cause string
}

// failRecordingStore is a countingStore that also records each Fail call.
type failRecordingStore struct {
	countingStore
	mu    sync.Mutex
	fails []failStatement
}

func (s *failRecordingStore) Fail(ctx context.Context, owner string, ids []int64, cause string) error {
	s.mu.Lock()
	s.fails = append(s.fails, failStatement{owner, len(ids), cause})
	s.mu.Unlock()
	return s.countingStore.Fail(ctx, owner, ids, cause)
}

func (s *failRecordingStore) statements() []failStatement {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]failStatement(nil), s.fails...)
}

// refusingProvider fails every publish the way the AMQP provider does:
// topic "orders.paid" is refused with its delivery tag, any other comes
// back unroutable with its UUID, so the error texts of two messages differ.
type refusingProvider struct {
	*memory.Provider
	mu  sync.Mutex
	tag int
}

func (p *refusingProvider) PublishEncoded(_ context.Context, msg *message.Message, _ []byte) (mq.Confirmation, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tag++
	if msg.Topic == "orders.paid" {
		return refused{fmt.Errorf("amqp: delivery tag %d: %w", p.tag, mq.ErrNacked)}, nil
	}
	return refused{fmt.Errorf("amqp: message %s: %w", msg.UUID, mq.ErrUnroutable)}, nil
}

type refused struct{ err error }

func (r refused) Wait(context.Context) error { return r.err }

// Rows failing for the same cause are recorded together: 200 unroutable
// rows of one topic and 100 nacked rows, failing at once, cost one UPDATE
// per cause, not one per row, and no UUID or delivery tag reaches
// last_error.
func TestAckerRecordsOneStatementPerCause(t *testing.T) {
	o := DefaultOptions()
	o.Logger = discardLogger()
	store := &failRecordingStore{}
	a := newAcker(context.Background(), store, o)
	d := newDispatcher(context.Background(), &refusingProvider{Provider: memory.NewBroker().Provider()}, a, o)
	d.start()
	started := false
	defer func() {
		d.close()
		d.wait()
		if !started {
			a.start(1)
		}
		a.closeAndWait()
	}()
	const unroutable, nacked = 200, 100
	for i := 0; i < unroutable+nacked; i++ {
		topic := "orders.created"
		if i >= unroutable {
			topic = "orders.paid"
		}
		o, err := snapshot(message.New(topic, nil))
		if err != nil {
			t.Fatal(err)
		}
		o.id, o.owner = int64(i+1), "relay"
		if err := d.submit(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	// The acker starts once every verdict is queued, so it finds them in
	// one batch, as it does when a claim's rows fail together.
	testenv.Eventually(t, 10*time.Second, func() bool { return len(a.fails) == unroutable+nacked }, "every verdict queued")
	a.start(1)
	started = true
	testenv.Eventually(t, 10*time.Second, func() bool { return store.failed.Load() == unroutable+nacked }, "every failure recorded")

	got := store.statements()
	t.Logf("%d rows failed, %d Fail statements: %+v", unroutable+nacked, len(got), got)
	want := []failStatement{
		{"relay", unroutable, `mq: message unroutable: no queue is bound to topic "orders.created"`},
		{"relay", nacked, "mq: publish not confirmed"},
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("Fail statements %+v, want %+v", got, want)
	}
}

// A batch of failures with many distinct details (here unroutable topics)
// still costs a bounded number of statements: beyond maxDetailedCauses the
// rows are recorded under their class.
func TestAckerBoundsStatementsPerBatch(t *testing.T) {
	o := DefaultOptions()
	o.Logger = discardLogger()
	store := &failRecordingStore{}
	a := newAcker(context.Background(), store, o)
	const rows = 300
	for i := 0; i < rows; i++ {
		topic := fmt.Sprintf("tenant.%d.created", i)
		a.fail(failure{id: int64(i + 1), owner: "relay", topic: topic, err: fmt.Errorf("amqp: message %d: %w", i, mq.ErrUnroutable)})
	}
	a.start(1)
	a.closeAndWait()
	got := store.statements()
	if len(got) != maxDetailedCauses+1 {
		t.Fatalf("%d Fail statements for %d rows of distinct topics, want %d", len(got), rows, maxDetailedCauses+1)
	}
	if last := got[len(got)-1]; last.cause != mq.ErrUnroutable.Error() || last.rows != rows-maxDetailedCauses {
		t.Fatalf("last statement %+v, want the remaining %d rows under %q", last, rows-maxDetailedCauses, mq.ErrUnroutable)
	}
}

// logRecords is a slog.Handler that keeps every record, for tests that
// count log lines.
type logRecords struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecords) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}
func (h *logRecords) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecords) WithGroup(string) slog.Handler      { return h }

// count returns how many records at level have msg containing text.
func (h *logRecords) count(level slog.Level, text string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.records {
		if r.Level == level && strings.Contains(r.Message, text) {
			n++
		}
	}
	return n
}

func (h *logRecords) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for _, r := range h.records {
		fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
		r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s", a); return true })
		b.WriteByte('\n')
	}
	return b.String()
}

// mysqlStore returns a migrated store on a fresh table of db, dropped
// when the test ends.
func mysqlStore(t *testing.T, db *sql.DB, opts mysql.Options) *mysql.Store {
	t.Helper()
	s, err := mysql.New(db, "final_"+testenv.Service(t, db)+"_outbox", opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func insertRow(t *testing.T, s outbox.Store, m *message.Message, key string) int64 {
	t.Helper()
	body, err := message.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.Insert(context.Background(), nil, outbox.Row{Body: body, OrderKey: outbox.OrderKey(m.Topic, key)})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// A write that fails for a reason that trying again cannot fix (here the
// outbox table is gone) is reported once at Error and dropped, so the
// acker goes on with the next batch instead of retrying it until
// Shutdown; the row would stay in the outbox for the relay.
func TestAckerDropsAWriteThatFailsForGood(t *testing.T) {
	db := testenv.DB(t)
	store := mysqlStore(t, db, mysql.Options{})
	id := insertRow(t, store, message.New("t", nil), "")
	if _, err := db.Exec("DROP TABLE `" + store.Table() + "`"); err != nil {
		t.Fatal(err)
	}
	logs := &logRecords{}
	o := DefaultOptions()
	o.Logger = slog.New(logs)
	closeAcker(t, store, o, logs, id)
	if n := logs.count(slog.LevelError, "failed for good"); n != 1 {
		t.Fatalf("%d Error lines for the dropped write, want 1; log:\n%s", n, logs)
	}
	if n := logs.count(slog.LevelWarn, "retrying"); n != 0 {
		t.Fatalf("a permanent error was retried %d times; log:\n%s", n, logs)
	}
}

// A write that fails with a transient error (outbox.ErrTransient) is
// retried until it succeeds, not dropped.
func TestAckerRetriesATransientError(t *testing.T) {
	db := testenv.DB(t)
	store := &transientDeletes{Store: mysqlStore(t, db, mysql.Options{}), failures: 2}
	id := insertRow(t, store, message.New("t", nil), "")
	logs := &logRecords{}
	o := DefaultOptions()
	o.Logger = slog.New(logs)
	a := newAcker(context.Background(), store, o)
	a.start(1)
	defer a.closeAndWait()
	a.done(id)
	testenv.Eventually(t, 30*time.Second, func() bool {
		left, err := store.Remaining(context.Background(), []int64{id})
		return err == nil && len(left) == 0
	}, "the row deleted after two transient failures; log:\n%s", logs)
	if n := logs.count(slog.LevelWarn, "retrying"); n != 2 {
		t.Fatalf("%d retries logged, want 2; log:\n%s", n, logs)
	}
	if n := logs.count(slog.LevelError, ""); n != 0 {
		t.Fatalf("%d Error lines for a transient error; log:\n%s", n, logs)
	}
}

// transientDeletes is a store whose first failures Deletes fail with a
// transient error.
type transientDeletes struct {
	outbox.Store
	mu       sync.Mutex
	failures int
}

func (s *transientDeletes) Delete(ctx context.Context, ids []int64) error {
	s.mu.Lock()
	fail := s.failures > 0
	s.failures--
	s.mu.Unlock()
	if fail {
		return fmt.Errorf("delete: %w: the server is read-only for a moment", outbox.ErrTransient)
	}
	return s.Store.Delete(ctx, ids)
}

// The acker's DELETE skips a row another transaction holds instead of
// waiting for it: a held claim of a relay publishes that row and deletes
// it itself, and may wait for the acker meanwhile. Here the pool's
// sessions wait one second for a lock, so a DELETE that waited would fail
// and be retried (logged at Warn).
func TestAckerSkipsARowAnotherTransactionHolds(t *testing.T) {
	db := testenv.DB(t)
	dsn := testenv.MySQLDSN()
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	impatient, err := sql.Open("mysql", dsn+sep+"innodb_lock_wait_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { impatient.Close() }) // after the table is dropped
	store := mysqlStore(t, impatient, mysql.Options{})
	held := insertRow(t, store, message.New("t", nil), "")
	free := insertRow(t, store, message.New("t", nil), "")

	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // rolled back below; a no-op then
	var locked int64
	if err := tx.QueryRow("SELECT id FROM `"+store.Table()+"` WHERE id = ? FOR UPDATE", held).Scan(&locked); err != nil {
		t.Fatal(err)
	}

	logs := &logRecords{}
	o := DefaultOptions()
	o.Logger = slog.New(logs)
	closeAcker(t, store, o, logs, held, free)
	if n := logs.count(slog.LevelWarn, "retrying"); n != 0 {
		t.Fatalf("the DELETE waited for the lock and was retried %d times; log:\n%s", n, logs)
	}
	left, err := store.Remaining(context.Background(), []int64{held, free})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0] != held {
		t.Fatalf("rows left = %v, want only the held row %d (the free row %d deleted)", left, held, free)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// closeAcker runs an acker on store that deletes the rows of ids, and
// closes it: the test fails unless it has finished its writes within 30s.
// One still retrying then is stopped before the test ends.
func closeAcker(t *testing.T, store outbox.Store, o Options, logs *logRecords, ids ...int64) {
	t.Helper()
	ctx, giveUp := context.WithCancel(context.Background())
	a := newAcker(ctx, store, o)
	a.start(1)
	for _, id := range ids {
		a.done(id)
	}
	finished := make(chan struct{})
	go func() { a.closeAndWait(); close(finished) }()
	t.Cleanup(func() { giveUp(); <-finished }) // if the acker is still retrying
	testenv.Eventually(t, 30*time.Second, func() bool {
		select {
		case <-finished:
			return true
		default:
			return false
		}
	}, "the acker finished its writes; log:\n%s", logs)
}

// A permanent error that fails every batch alike is reported at Error once
// per errorReportEvery; the writes dropped meanwhile are counted in the
// next line and logged at Debug.
func TestErrorReportSaysItOncePerInterval(t *testing.T) {
	logs := &logRecords{}
	log := slog.New(logs)
	var r errorReport
	for i := 0; i < 5; i++ {
		r.report(log, "delete confirmed rows", 10, errors.New("outbox/mysql: delete: table is gone"))
	}
	if n := logs.count(slog.LevelError, "failed for good"); n != 1 {
		t.Fatalf("%d Error lines for 5 dropped writes in a row, want 1; log:\n%s", n, logs)
	}
	if n := logs.count(slog.LevelDebug, "failed for good"); n != 4 {
		t.Fatalf("%d Debug lines, want 4; log:\n%s", n, logs)
	}
	r.last = r.last.Add(-errorReportEvery) // the interval has passed
	r.report(log, "delete confirmed rows", 10, errors.New("outbox/mysql: delete: table is gone"))
	if n := logs.count(slog.LevelError, "failed for good"); n != 2 {
		t.Fatalf("%d Error lines after the interval, want 2; log:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "dropped_since_last_report=4 their_rows=40") {
		t.Fatalf("the second Error line does not count the writes dropped meanwhile; log:\n%s", logs)
	}
}

// deleteRecordingStore is a countingStore that records the size of each
// Delete.
type deleteRecordingStore struct {
	countingStore
	mu      sync.Mutex
	deletes []int
}

func (s *deleteRecordingStore) Delete(ctx context.Context, ids []int64) error {
	s.mu.Lock()
	s.deletes = append(s.deletes, len(ids))
	s.mu.Unlock()
	return s.countingStore.Delete(ctx, ids)
}

func (s *deleteRecordingStore) statements() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.deletes...)
}

// An acker holds a confirmed row for AckLinger while more arrive, so that
// rows confirmed one by one share a DELETE; a full batch goes at once, and
// closing writes what is held.
func TestAckerLingersToFillADelete(t *testing.T) {
	o := DefaultOptions()
	o.Logger = discardLogger()
	o.AckBatchSize = 5
	o.AckLinger = time.Hour              // only a full batch or the close ends a batch:
	o.OutboxScanAgoTime = 10 * time.Hour // the cap, half of this, is beyond the test
	store := &deleteRecordingStore{}
	a := newAcker(context.Background(), store, o)
	a.start(1)
	a.done(1)
	// The acker has taken the first row: without the linger it would
	// delete it alone now.
	testenv.Eventually(t, 10*time.Second, func() bool { return len(a.dones) == 0 }, "the first row taken")
	for id := int64(2); id <= 7; id++ {
		a.done(id)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return store.deleted.Load() >= 5 }, "a full batch deleted")
	a.closeAndWait()
	if got := store.statements(); !slices.Equal(got, []int{5, 2}) {
		t.Fatalf("DELETE sizes %v, want [5 2]: a full batch at once, the rest at close", got)
	}
}

// A batch that does not fill is written once AckLinger has passed.
func TestAckerWritesAPartialBatchAfterTheLinger(t *testing.T) {
	o := DefaultOptions()
	o.Logger = discardLogger()
	o.AckLinger = 10 * time.Millisecond
	store := &deleteRecordingStore{}
	a := newAcker(context.Background(), store, o)
	a.start(1)
	defer a.closeAndWait()
	a.done(1)
	a.done(2)
	testenv.Eventually(t, 10*time.Second, func() bool { return store.deleted.Load() == 2 }, "the rows deleted without a close")
}

// The linger is capped at half OutboxScanAgoTime: confirmed rows still in
// the table when the relay may claim them would be sent again.
func TestAckerLingersAtMostHalfTheScanAge(t *testing.T) {
	o := DefaultOptions().WithOutboxScanAgoTime(10 * time.Millisecond).WithAckLinger(time.Hour)
	if a := newAcker(context.Background(), &countingStore{}, o); a.linger != 5*time.Millisecond {
		t.Fatalf("linger %s, want 5ms", a.linger)
	}
}

// With no linger an acker writes what is queued when it wakes, as it did
// before AckLinger: a lone row goes at once.
func TestAckerWithoutLingerWritesAtOnce(t *testing.T) {
	o := DefaultOptions().WithAckLinger(0)
	o.Logger = discardLogger()
	store := &deleteRecordingStore{}
	a := newAcker(context.Background(), store, o)
	a.start(1)
	defer a.closeAndWait()
	a.done(1)
	testenv.Eventually(t, 10*time.Second, func() bool { return store.deleted.Load() == 1 }, "the row deleted without a close")
	if got := store.statements(); !slices.Equal(got, []int{1}) {
		t.Fatalf("DELETE sizes %v, want [1]", got)
	}
}
