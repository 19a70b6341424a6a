package outboxtest

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/finalbus/final/outbox"
)

// InboxHarness tells RunInbox how to make inboxes.
type InboxHarness struct {
	// New returns a migrated, empty inbox on a fresh table and the
	// database it lives in.
	New func(t *testing.T) (outbox.Inbox, *sql.DB)
	// SingleWriter says the database runs one write transaction at a
	// time (SQLite): a record waits for any open transaction that wrote,
	// whatever its key. The suite then checks that a record on another
	// topic completes once the open transaction ends, rather than that it
	// does not wait.
	SingleWriter bool
	// Begin, when set, begins the transactions the suite records in, as
	// Harness.Begin does.
	Begin func(ctx context.Context, db *sql.DB) (outbox.Tx, error)
}

// RunInbox runs the suite for outbox.Inbox implementations.
func RunInbox(t *testing.T, h InboxHarness) {
	t.Run("RecordFollowsTransaction", func(t *testing.T) { testRecordTx(t, h) })
	t.Run("RecordIsPerTopic", func(t *testing.T) { testRecordPerTopic(t, h) })
	t.Run("KeyComparesBytes", func(t *testing.T) { testRecordBytes(t, h) })
	t.Run("LongestUUIDAndTopic", func(t *testing.T) { testRecordLongest(t, h) })
	t.Run("ConcurrentDuplicateWaits", func(t *testing.T) { testRecordConcurrent(t, h) })
	t.Run("OtherTopicDoesNotWait", func(t *testing.T) { testRecordOtherTopicNoWait(t, h) })
}

func (h InboxHarness) begin(t *testing.T, db *sql.DB) outbox.Tx {
	t.Helper()
	return Harness{Begin: h.Begin}.begin(t, db)
}

func (h InboxHarness) beginE(db *sql.DB) (outbox.Tx, error) {
	return Harness{Begin: h.Begin}.beginE(db)
}

// record records (topic, uuid) in a transaction of its own, committed, and
// returns dup.
func (h InboxHarness) record(t *testing.T, in outbox.Inbox, db *sql.DB, uuid, topic string) bool {
	t.Helper()
	tx := h.begin(t, db)
	dup, err := in.Record(ctx, tx, uuid, topic)
	if err != nil {
		tx.Rollback(ctx)
		t.Fatalf("Record(%q, %q): %v", uuid, topic, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return dup
}

func testRecordTx(t *testing.T, h InboxHarness) {
	in, db := h.New(t)
	tx := h.begin(t, db)
	if dup, err := in.Record(ctx, tx, "u1", "t"); err != nil || dup {
		t.Fatalf("first Record = %v, %v", dup, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if h.record(t, in, db, "u1", "t") {
		t.Fatal("a rolled-back record counted")
	}
	if !h.record(t, in, db, "u1", "t") {
		t.Fatal("a committed record was not recognised")
	}
}

// The same UUID on two topics is two messages; on one topic, one.
func testRecordPerTopic(t *testing.T, h InboxHarness) {
	in, db := h.New(t)
	if h.record(t, in, db, "same", "orders.created") {
		t.Fatal("first record reported dup")
	}
	if h.record(t, in, db, "same", "orders.paid") {
		t.Fatal("the same UUID on another topic reported dup")
	}
	if !h.record(t, in, db, "same", "orders.created") {
		t.Fatal("a duplicate on the same topic was not recognised")
	}
	if !h.record(t, in, db, "same", "orders.paid") {
		t.Fatal("a duplicate on the second topic was not recognised")
	}
}

// Neither case nor trailing spaces make two keys one.
func testRecordBytes(t *testing.T, h InboxHarness) {
	in, db := h.New(t)
	for _, k := range []struct{ uuid, topic string }{
		{"abc", "t"}, {"ABC", "t"}, {"abc ", "t"}, {"abc", "T"},
	} {
		if h.record(t, in, db, k.uuid, k.topic) {
			t.Fatalf("(%q, %q) taken for a duplicate of an earlier key", k.topic, k.uuid)
		}
	}
}

// UUIDs of outbox.MaxUUIDLen bytes that differ only in their last byte
// are two records, as are topics of outbox.MaxTopicLen.
func testRecordLongest(t *testing.T, h InboxHarness) {
	in, db := h.New(t)
	u := strings.Repeat("u", outbox.MaxUUIDLen-1)
	top := strings.Repeat("t", outbox.MaxTopicLen-1)
	for _, k := range []struct{ uuid, topic string }{
		{u + "1", top + "1"}, {u + "2", top + "1"}, {u + "1", top + "2"},
	} {
		if h.record(t, in, db, k.uuid, k.topic) {
			t.Fatalf("(%q, %q) taken for a duplicate of an earlier key", k.topic, k.uuid)
		}
	}
	if !h.record(t, in, db, u+"2", top+"1") {
		t.Fatal("a duplicate of the longest key was not recognised")
	}
}

// Two deliveries of one message racing: the second waits for the first
// and then sees its commit.
func testRecordConcurrent(t *testing.T, h InboxHarness) {
	in, db := h.New(t)
	first := h.begin(t, db)
	if dup, err := in.Record(ctx, first, "race", "t"); err != nil || dup {
		first.Rollback(ctx)
		t.Fatalf("first Record = %v, %v", dup, err)
	}
	type result struct {
		dup bool
		err error
	}
	second := make(chan result, 1)
	go func() {
		tx, err := h.beginE(db)
		if err != nil {
			second <- result{err: err}
			return
		}
		defer tx.Rollback(ctx)
		dup, err := in.Record(ctx, tx, "race", "t")
		second <- result{dup, err}
	}()
	if err := first.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-second; r.err != nil || !r.dup {
		t.Fatalf("second Record = %v, %v; want a duplicate", r.dup, r.err)
	}
}

// A record of the same UUID on another topic is not held up by an open
// transaction that recorded it on the first.
func testRecordOtherTopicNoWait(t *testing.T, h InboxHarness) {
	in, db := h.New(t)
	first := h.begin(t, db)
	defer first.Rollback(ctx)
	if dup, err := in.Record(ctx, first, "shared", "a"); err != nil || dup {
		t.Fatalf("first Record = %v, %v", dup, err)
	}
	if h.SingleWriter {
		type result struct {
			dup bool
			err error
		}
		other := make(chan result, 1)
		go func() {
			tx, err := h.beginE(db)
			if err != nil {
				other <- result{err: err}
				return
			}
			defer tx.Rollback(ctx)
			dup, err := in.Record(ctx, tx, "shared", "b")
			if err == nil {
				err = tx.Commit(ctx)
			}
			other <- result{dup, err}
		}()
		if err := first.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if r := <-other; r.err != nil || r.dup {
			t.Fatalf("Record on the other topic = %v, %v", r.dup, r.err)
		}
		return
	}
	// An implementation keyed by UUID alone waits here for the open
	// transaction, until the database's lock wait timeout fails it.
	second := h.begin(t, db)
	defer second.Rollback(ctx)
	if dup, err := in.Record(ctx, second, "shared", "b"); err != nil || dup {
		t.Fatalf("Record on the other topic = %v, %v", dup, err)
	}
}
