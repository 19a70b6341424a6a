package final

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq/memory"
	"github.com/finalbus/final/outbox"
)

// readerStore is a countingStore whose rows can be read back by id.
type readerStore struct {
	countingStore
	mu    sync.Mutex
	rows  map[int64]outbox.Record
	reads [][]int64 // the ids of each Read
	err   error     // Read fails with it when set
}

func (s *readerStore) Read(_ context.Context, ids []int64) ([]outbox.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads = append(s.reads, slices.Clone(ids))
	if s.err != nil {
		return nil, s.err
	}
	var recs []outbox.Record
	for _, id := range slices.Sorted(slices.Values(ids)) {
		if r, ok := s.rows[id]; ok {
			recs = append(recs, r)
		}
	}
	return recs, nil
}

// stored puts a row of topic t in s and returns it as committed.
func (s *readerStore) stored(t *testing.T, id, key int64, sendBy time.Time) outgoing {
	t.Helper()
	o := row(t, id, key, "", sendBy)
	m, err := message.Unmarshal(o.body)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows[id] = outbox.Record{ID: id, Message: m, Body: o.body, OrderKey: key}
	return o
}

// overflowOn returns a dispatcher whose loops do not run, so its queue
// holds what it is given, and its overflow on s, not started yet.
func overflowOn(t *testing.T, s outbox.Store, o Options) (*dispatcher, *overflow) {
	t.Helper()
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	d := newDispatcher(context.Background(), memory.NewBroker().Provider(), newAcker(context.Background(), s, o), o)
	f := newOverflow(s, d, o)
	if f == nil {
		t.Fatal("no overflow on a store with outbox.Reader")
	}
	t.Cleanup(f.stop)
	return d, f
}

// queued takes the next row from d's queue, or fails after a while.
func queued(t *testing.T, d *dispatcher) outgoing {
	t.Helper()
	select {
	case o := <-d.queue:
		d.bytes.release(o.size())
		return o
	case <-time.After(10 * time.Second):
		t.Fatal("nothing was queued")
		return outgoing{}
	}
}

// Committed rows the dispatch queue had no room for are read back by id
// and queued, oldest first, as soon as it has room, instead of waiting out
// OutboxScanAgoTime for the relay; a row past its window, a keyed row, and
// a row gone from the table are left to the relay.
func TestOverflowReadsBackWhatTheQueueHadNoRoomFor(t *testing.T) {
	s := &readerStore{rows: map[int64]outbox.Record{}}
	d, f := overflowOn(t, s, DefaultOptions().WithDispatchQueueSize(2))
	open := time.Now().Add(time.Hour)
	var rows []outgoing
	for id := int64(1); id <= 6; id++ {
		rows = append(rows, s.stored(t, id, 0, open))
	}
	late := s.stored(t, 7, 0, time.Now().Add(-time.Second))
	keyed := s.stored(t, 8, 42, open)
	gone := row(t, 9, 0, "", open) // deleted meanwhile: not in the table

	for _, o := range rows[:2] {
		if !d.offer(o) {
			t.Fatalf("row %d refused by an empty queue", o.id)
		}
	}
	if d.offer(rows[2]) {
		t.Fatal("a full queue took row 3")
	}
	for _, o := range []outgoing{rows[2], late, rows[3], gone, rows[4], rows[5]} {
		if !f.add(o) {
			t.Fatalf("row %d not remembered", o.id)
		}
	}
	if f.add(keyed) {
		t.Fatal("a keyed row was remembered; its key's order is the relay's")
	}
	if !f.holds() {
		t.Fatal("holds() false with rows remembered")
	}
	f.start()
	var got []int64
	for range 6 {
		o := queued(t, d)
		got = append(got, o.id)
		if o.owner != "" || o.key != 0 || !o.sendBy.Equal(open) {
			t.Fatalf("row %d queued with owner %q, key %d, sendBy %v; want a committed row's, window kept", o.id, o.owner, o.key, o.sendBy)
		}
		if want := s.rows[o.id]; o.msg == nil || o.msg.UUID != want.Message.UUID || string(o.body) != string(want.Body) {
			t.Fatalf("row %d queued with message %+v, want the stored %s", o.id, o.msg, want.Message.UUID)
		}
	}
	if want := []int64{1, 2, 3, 4, 5, 6}; !slices.Equal(got, want) {
		t.Fatalf("queued rows %v, want %v", got, want)
	}
	select {
	case o := <-d.queue:
		t.Fatalf("row %d queued; only rows 3–6 could be read back", o.id)
	default:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ids := range s.reads {
		if slices.Contains(ids, late.id) {
			t.Fatalf("the late row was read back (reads %v): its window is the relay's", s.reads)
		}
	}
	if f.holds() {
		t.Fatal("holds() true once every row was read back")
	}
}

// The overflow remembers at most overflowPerQueued × DispatchQueueSize
// rows, and at least minOverflow; beyond it rows are left to the relay.
func TestOverflowIsBounded(t *testing.T) {
	s := &readerStore{rows: map[int64]outbox.Record{}, err: errors.New("unused")}
	o := DefaultOptions().WithDispatchQueueSize(minOverflow/overflowPerQueued + 1)
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	d := newDispatcher(context.Background(), memory.NewBroker().Provider(), newAcker(context.Background(), s, o), o)
	f := newOverflow(s, d, o) // not started: nothing reads back
	open := time.Now().Add(time.Hour)
	bound := int64(o.DispatchQueueSize * overflowPerQueued)
	for id := int64(1); id <= bound; id++ {
		if !f.add(row(t, id, 0, "", open)) {
			t.Fatalf("row %d not remembered below the bound", id)
		}
	}
	if f.add(row(t, bound+1, 0, "", open)) {
		t.Fatal("a row beyond the bound was remembered")
	}
	if got := f.next(time.Now(), 1<<40); len(got) != f.batch {
		t.Fatalf("next returned %d rows, want a batch of %d", len(got), f.batch)
	}
	if !f.add(row(t, bound+2, 0, "", open)) {
		t.Fatal("no row remembered once the others were taken")
	}
	if small := newOverflow(s, d, o.WithDispatchQueueSize(2)); small.max != minOverflow {
		t.Fatalf("a 2-row queue's overflow remembers %d rows, want minOverflow = %d", small.max, minOverflow)
	}
}

// A read that fails leaves every remembered row to the relay (they are in
// the table) rather than trying each again while the database is away.
func TestOverflowLeavesRowsToTheRelayWhenAReadFails(t *testing.T) {
	s := &readerStore{rows: map[int64]outbox.Record{}, err: errors.New("connection refused")}
	d, f := overflowOn(t, s, DefaultOptions().WithOutboxScanOffset(2))
	open := time.Now().Add(time.Hour)
	for id := int64(1); id <= 5; id++ {
		f.add(s.stored(t, id, 0, open))
	}
	f.start()
	testenv.Eventually(t, 10*time.Second, func() bool { return !f.holds() }, "no row remembered after a failed read")
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reads) != 1 {
		t.Fatalf("%d reads, want one: the rows after a failed read are the relay's", len(s.reads))
	}
	if n := len(d.queue); n != 0 {
		t.Fatalf("%d rows queued after a failed read", n)
	}
}
