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
// and queued, oldest first, once it has room, instead of waiting out
// OutboxScanAgoTime for the relay. Left to the relay: a row in the second
// half of its window or past it, a keyed row, a row gone from the table,
// and one that cannot be decoded.
func TestOverflowReadsBackWhatTheQueueHadNoRoomFor(t *testing.T) {
	s := &readerStore{rows: map[int64]outbox.Record{}}
	opt := DefaultOptions().WithDispatchQueueSize(2)
	d, f := overflowOn(t, s, opt)
	open := time.Now().Add(time.Hour) // the rows' sendBy: fastPathSendBy, the middle of their window
	var rows []outgoing
	for id := int64(1); id <= 6; id++ {
		rows = append(rows, s.stored(t, id, 0, open))
	}
	late := s.stored(t, 7, 0, time.Now().Add(-opt.OutboxScanAgoTime))      // past its window
	closing := s.stored(t, 8, 0, time.Now().Add(-opt.OutboxScanAgoTime/4)) // in the second half of its window
	keyed := s.stored(t, 9, 42, open)
	gone := row(t, 10, 0, "", open) // deleted meanwhile: not in the table
	broken := s.stored(t, 11, 0, open)
	s.rows[broken.id] = outbox.Record{ID: broken.id, Body: []byte{0xc1}, Err: message.ErrDecode}

	for _, o := range rows[:2] {
		if !d.offer(o) {
			t.Fatalf("row %d refused by an empty queue", o.id)
		}
	}
	if d.offer(rows[2]) {
		t.Fatal("a full queue took row 3")
	}
	if f.join(rows[2]) {
		t.Fatal("a row joined an overflow that holds nothing; it goes to the queue or to add")
	}
	if !f.add(rows[2]) {
		t.Fatalf("row %d not remembered", rows[2].id)
	}
	for _, o := range []outgoing{late, rows[3], closing, gone, broken, rows[4], rows[5]} {
		if !f.join(o) {
			t.Fatalf("row %d did not join the rows remembered before it", o.id)
		}
	}
	if f.add(keyed) || f.join(keyed) {
		t.Fatal("a keyed row was remembered; its key's order is the relay's")
	}
	f.start()
	var got []int64
	for range 6 {
		o := queued(t, d)
		got = append(got, o.id)
		if o.owner != "" || o.key != 0 {
			t.Fatalf("row %d queued with owner %q, key %d; want a committed row's", o.id, o.owner, o.key)
		}
		if !o.sendBy.Equal(open) {
			t.Fatalf("row %d queued with sendBy %v, want its own, %v", o.id, o.sendBy, open)
		}
		if want := s.rows[o.id]; o.msg == nil || o.msg.UUID != want.Message.UUID || string(o.body) != string(want.Body) {
			t.Fatalf("row %d queued with message %+v, want the stored %s", o.id, o.msg, want.Message.UUID)
		}
	}
	if want := []int64{1, 2, 3, 4, 5, 6}; !slices.Equal(got, want) {
		t.Fatalf("queued rows %v, want %v", got, want)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return f.pending.Load() == 0 && !f.reading.Load() }, "the overflow idle")
	select {
	case o := <-d.queue:
		t.Fatalf("row %d queued; only rows 3–6 could be read back", o.id)
	default:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ids := range s.reads {
		if slices.Contains(ids, late.id) || slices.Contains(ids, closing.id) {
			t.Fatalf("a row past the first half of its window was read back (reads %v): it is the relay's", s.reads)
		}
	}
}

// The overflow remembers at most overflowPerQueued × DispatchQueueSize
// rows, and at least minOverflow; beyond it rows are left to the relay.
func TestOverflowIsBounded(t *testing.T) {
	s := &readerStore{rows: map[int64]outbox.Record{}}
	o := DefaultOptions().WithDispatchQueueSize(minOverflow/overflowPerQueued + 1)
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	d := newDispatcher(context.Background(), memory.NewBroker().Provider(), newAcker(context.Background(), s, o), o)
	f := newOverflow(s, d, o) // not started: nothing reads back
	open := time.Now().Add(time.Hour)
	bound := int64(o.DispatchQueueSize * overflowPerQueued)
	for id := int64(1); id <= bound; id++ {
		if !f.add(outgoing{id: id, sendBy: open}) {
			t.Fatalf("row %d not remembered below the bound", id)
		}
	}
	if f.add(outgoing{id: bound + 1, sendBy: open}) {
		t.Fatal("a row beyond the bound was remembered")
	}
	if got := f.next(time.Now(), 1<<40); len(got) != f.batch {
		t.Fatalf("next returned %d rows, want a batch of %d", len(got), f.batch)
	}
	if !f.add(outgoing{id: bound + 2, sendBy: open}) {
		t.Fatal("no row remembered once the others were taken")
	}
	if small := newOverflow(s, d, o.WithDispatchQueueSize(2)); small.max != minOverflow {
		t.Fatalf("a 2-row queue's overflow remembers %d rows, want minOverflow = %d", small.max, minOverflow)
	}
}

// A remembered row counts the bytes it will hold once read back: its
// body, whose payload is then a slice of it, not its committed payload's
// copy as well.
func TestOverflowCountsARowAsReadBack(t *testing.T) {
	_, f := overflowOn(t, &readerStore{rows: map[int64]outbox.Record{}}, DefaultOptions()) // not started: nothing reads back
	payload := make([]byte, 1000)
	body, err := message.Marshal(message.New("t", payload))
	if err != nil {
		t.Fatal(err)
	}
	if !f.add(outgoing{id: 1, msg: message.New("t", payload), body: body}) {
		t.Fatal("row not remembered")
	}
	if got := f.next(time.Now(), 1<<40); len(got) != 1 || got[0].size != int64(len(body)) {
		t.Fatalf("remembered %+v, want one row of its body's %d bytes", got, len(body))
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
	testenv.Eventually(t, 10*time.Second, func() bool { return f.pending.Load() == 0 && !f.reading.Load() },
		"no row remembered after a failed read")
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reads) != 1 {
		t.Fatalf("%d reads, want one: the rows after a failed read are the relay's", len(s.reads))
	}
	if n := len(d.queue); n != 0 {
		t.Fatalf("%d rows queued after a failed read", n)
	}
}

// The overflow reads a batch back only once the dispatcher has room for
// it in bytes, not a row per read as room trickles in, and holds nothing
// read meanwhile.
func TestOverflowWaitsForRoomBeforeReading(t *testing.T) {
	s := &readerStore{rows: map[int64]outbox.Record{}}
	open := time.Now().Add(time.Hour)
	var rows []outgoing
	for id := int64(1); id <= 6; id++ {
		rows = append(rows, s.stored(t, id, 0, open))
	}
	// Room for four rows; a batch read back is at most half of it.
	opt := DefaultOptions().WithDispatchQueueBytes(int(4 * rows[0].size()))
	d, f := overflowOn(t, s, opt)
	for _, o := range rows[:4] {
		if !d.offer(o) {
			t.Fatalf("row %d refused within the budget", o.id)
		}
	}
	if d.offer(rows[4]) {
		t.Fatal("row 5 taken beyond the budget")
	}
	for _, o := range rows[4:] {
		f.add(o)
	}
	f.start()
	testenv.Eventually(t, 10*time.Second, func() bool {
		d.bytes.mu.Lock()
		defer d.bytes.mu.Unlock()
		return d.bytes.waiters == 1
	}, "the overflow waiting for room")
	s.mu.Lock()
	reads := len(s.reads)
	s.mu.Unlock()
	if reads != 0 {
		t.Fatalf("%d reads while the dispatcher had no room", reads)
	}
	var got []int64
	for range 6 {
		got = append(got, queued(t, d).id)
	}
	if want := []int64{1, 2, 3, 4, 5, 6}; !slices.Equal(got, want) {
		t.Fatalf("queued rows %v, want %v", got, want)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reads) != 1 {
		t.Fatalf("rows 5 and 6 read back in %d reads %v, want one batch", len(s.reads), s.reads)
	}
}
