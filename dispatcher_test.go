package final

import (
	"context"
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
)

// memoryDispatcher is a dispatcher on the in-memory broker with an acker
// on store; it returns the service's deliveries. Everything stops with the
// test.
func memoryDispatcher(t *testing.T, store outbox.Store) (*dispatcher, <-chan mq.Delivery) {
	t.Helper()
	return memoryDispatcherWith(t, store, DefaultOptions())
}

func memoryDispatcherWith(t *testing.T, store outbox.Store, o Options) (*dispatcher, <-chan mq.Delivery) {
	t.Helper()
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	p := memory.NewBroker().Provider()
	if err := p.Init(context.Background(), mq.Config{Service: "svc", Topics: []string{"t"}, Logger: o.Logger}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	deliveries, err := p.Consume(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := newAcker(context.Background(), store, o)
	d := newDispatcher(context.Background(), p, a, o)
	a.start(1)
	d.start()
	t.Cleanup(func() {
		d.close()
		d.wait()
		a.closeAndWait()
		cancel()
		_ = p.Close()
	})
	return d, deliveries
}

func row(t *testing.T, id, key int64, owner string, sendBy time.Time) outgoing {
	t.Helper()
	o, err := snapshot(message.New("t", []byte("x")))
	if err != nil {
		t.Fatal(err)
	}
	o.id, o.key, o.owner, o.sendBy = id, key, owner, sendBy
	return o
}

func nextDelivery(t *testing.T, deliveries <-chan mq.Delivery) *message.Message {
	t.Helper()
	select {
	case d := <-deliveries:
		m, err := d.Message()
		if err != nil {
			t.Fatal(err)
		}
		_ = d.Ack()
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery within 10s")
		return nil
	}
}

// A row that waited in the queue past its window is not published: a
// relay may be sending it already. It stays in the table (nothing deletes
// it) and the rows behind it go on.
func TestDispatcherLeavesLateRowsToTheRelay(t *testing.T) {
	store := &countingStore{}
	d, deliveries := memoryDispatcher(t, store)
	past, future := time.Now().Add(-time.Second), time.Now().Add(time.Hour)
	rows := []outgoing{
		row(t, 1, 0, "relay", past), // a claim whose lease is (nearly) over
		row(t, 2, 0, "", past),      // a committed row the relay may claim now
		row(t, 3, 0, "relay", future),
		row(t, 4, 0, "", time.Time{}), // no limit
	}
	for _, o := range rows {
		if err := d.submit(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	// The queue is served in order, so had rows 1 or 2 been sent they
	// would arrive before row 3.
	for _, want := range rows[2:] {
		if got := nextDelivery(t, deliveries); got.UUID != want.msg.UUID {
			t.Fatalf("delivered %s, want row %d (%s)", got.UUID, want.id, want.msg.UUID)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return store.deleted.Load() == 2 }, "the two sent rows deleted")
	if n := store.failed.Load(); n != 0 {
		t.Fatalf("%d late unkeyed rows recorded as failed; they need no write", n)
	}
}

// A claimed row of a key past its window goes back to the table with the
// rows of its key behind it, released without counting an attempt, so the
// key's order is kept; a committed row of a key keeps its place.
func TestDispatcherGivesBackLateClaimedRowsOfAKey(t *testing.T) {
	store := &countingStore{}
	d, deliveries := memoryDispatcher(t, store)
	past := time.Now().Add(-time.Second)
	late, fresh := row(t, 1, 7, "relay", past), row(t, 2, 8, "", past)
	for _, o := range []outgoing{late, fresh} {
		if err := d.submit(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	if got := nextDelivery(t, deliveries); got.UUID != fresh.msg.UUID {
		t.Fatalf("delivered %s, want the committed keyed row %s", got.UUID, fresh.msg.UUID)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return store.released.Load() == 1 }, "the late claimed row given back")
	testenv.Eventually(t, 10*time.Second, func() bool { return store.deleted.Load() == 1 }, "the committed row deleted")
	if n := store.failed.Load(); n != 0 {
		t.Fatalf("%d rows recorded as failed; the late row was not sent", n)
	}
}

// heldProvider confirms its publishes one by one, when the test says so,
// and records how many awaited their confirm at most.
type heldProvider struct {
	*memory.Provider
	release chan struct{} // one send confirms the oldest publish

	mu               sync.Mutex
	outstanding, top int
}

func (p *heldProvider) PublishEncoded(context.Context, *message.Message, []byte) (mq.Confirmation, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.outstanding++
	p.top = max(p.top, p.outstanding)
	return heldConfirmation{p}, nil
}

type heldConfirmation struct{ p *heldProvider }

func (c heldConfirmation) Wait(ctx context.Context) error {
	select {
	case <-c.p.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	c.p.mu.Lock()
	c.p.outstanding--
	c.p.mu.Unlock()
	return nil
}

// At most MaxUnconfirmed publishes await their confirm: the window is what
// a lost connection can turn into duplicates.
func TestDispatcherWindowBoundsUnconfirmedPublishes(t *testing.T) {
	o := DefaultOptions().WithMaxUnconfirmed(4)
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	p := &heldProvider{Provider: memory.NewBroker().Provider(), release: make(chan struct{})}
	store := &countingStore{}
	a := newAcker(context.Background(), store, o)
	d := newDispatcher(context.Background(), p, a, o)
	a.start(1)
	d.start()
	defer func() { d.close(); d.wait(); a.closeAndWait() }()
	const n = 20
	for i := 1; i <= n; i++ {
		if err := d.submit(context.Background(), row(t, int64(i), 0, "", time.Time{})); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing confirmed yet: the window fills and the rest wait for it.
	testenv.Eventually(t, 10*time.Second, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.outstanding == 4
	}, "the window did not fill")
	for i := 0; i < n; i++ {
		p.release <- struct{}{}
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return store.deleted.Load() == n }, "every row confirmed and deleted")
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.top != 4 {
		t.Fatalf("at most %d publishes awaited a confirm, want MaxUnconfirmed = 4", p.top)
	}
}

// sized returns a row whose body is n bytes, not a message: for a
// dispatcher whose loops do not run.
func sized(t *testing.T, id, key int64, owner string, n int) outgoing {
	t.Helper()
	o := row(t, id, key, owner, time.Time{})
	o.body = make([]byte, n)
	return o
}

func held(d *dispatcher) int64 { n, _ := d.bytes.held(); return n }

// The fast path takes committed rows while their bytes fit in
// DispatchQueueBytes, a row alone whatever its size, and leaves the others
// to the relay.
func TestDispatcherOffersWithinItsBytes(t *testing.T) {
	o := DefaultOptions().WithDispatchQueueBytes(1000)
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	store := &countingStore{}
	d := newDispatcher(context.Background(), memory.NewBroker().Provider(), newAcker(context.Background(), store, o), o)
	// The loops are not running: what is offered stays queued.
	for _, c := range []struct {
		row  outgoing
		took bool
	}{
		{sized(t, 1, 0, "", 600), true},
		{sized(t, 2, 0, "", 600), false}, // 1,200 bytes
		{sized(t, 3, 0, "", 300), true},  // 900
		{sized(t, 4, 0, "", 101), false}, // 1,001
	} {
		if got := d.offer(c.row); got != c.took {
			t.Fatalf("offer of row %d (%d bytes, %d held): %v, want %v", c.row.id, len(c.row.body), held(d), got, c.took)
		}
	}
	if n := held(d); n != 900 {
		t.Fatalf("%d bytes held, want 900", n)
	}
	for range 2 {
		r := <-d.queue
		d.bytes.release(r.size())
	}
	if !d.offer(sized(t, 5, 0, "", 5000)) {
		t.Fatal("a row larger than the budget refused by an empty dispatcher")
	}
}

// A relay row waiting for bytes goes before the committed rows offered
// meanwhile, which are left to the relay, as a blocked send on a full
// channel goes first.
func TestDispatcherRelayGoesFirstForBytes(t *testing.T) {
	o := DefaultOptions().WithDispatchQueueBytes(1000)
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	store := &countingStore{}
	d := newDispatcher(context.Background(), memory.NewBroker().Provider(), newAcker(context.Background(), store, o), o)
	if !d.offer(sized(t, 1, 0, "", 800)) {
		t.Fatal("first offer refused")
	}
	submitted := make(chan error, 1)
	go func() { submitted <- d.submit(context.Background(), sized(t, 2, 0, "relay", 400)) }()
	testenv.Eventually(t, 10*time.Second, func() bool {
		d.bytes.mu.Lock()
		defer d.bytes.mu.Unlock()
		return d.bytes.waiters == 1
	}, "the relay waits for room")
	if d.offer(sized(t, 3, 0, "", 100)) {
		t.Fatal("a committed row took room the relay waits for")
	}
	r := <-d.queue // row 1 is published
	d.bytes.release(r.size())
	if err := <-submitted; err != nil {
		t.Fatal(err)
	}
	if r := <-d.queue; r.id != 2 {
		t.Fatalf("queued row %d, want the relay's row 2", r.id)
	}
}

// Parked rows cannot hold the relay back for good: a key's parked rows may
// wait for the very row the relay brings. Once nothing but parked rows is
// held, the relay's row goes, and the key's rows follow it in order.
func TestDispatcherRelayRowGoesPastParkedBytes(t *testing.T) {
	const key = 7
	var rows []outgoing
	for i, owner := range []string{"relay", "", ""} {
		o, err := snapshot(message.New("t", make([]byte, 400)))
		if err != nil {
			t.Fatal(err)
		}
		o.id, o.key, o.owner = int64(i+1), key, owner
		rows = append(rows, o)
	}
	size := rows[0].size()
	store := &countingStore{}
	d, deliveries := memoryDispatcherWith(t, store, DefaultOptions().WithDispatchQueueBytes(int(2*size)))
	d.order.leftBehind(key, 1) // row 1 of the key is left in the table
	for _, r := range rows[1:] {
		if !d.offer(r) {
			t.Fatalf("offer of row %d refused", r.id)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		d.bytes.mu.Lock()
		defer d.bytes.mu.Unlock()
		return d.bytes.parked == 2*size
	}, "rows 2 and 3 parked behind row 1, holding the whole budget")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.submit(ctx, rows[0]); err != nil {
		t.Fatalf("the relay's row of the key: %v", err)
	}
	for _, want := range rows {
		if got := nextDelivery(t, deliveries); got.UUID != want.msg.UUID {
			t.Fatalf("delivered %s, want row %d (%s)", got.UUID, want.id, want.msg.UUID)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return held(d) == 0 }, "nothing held once all is sent")
	if _, peak := d.bytes.held(); peak > 3*size {
		t.Fatalf("held %d bytes at most, want at most the budget and one row", peak)
	}
}

// snapshot is Bus.snapshot in the default (envelope) wire format.
func snapshot(m *message.Message) (outgoing, error) { return (&Bus{}).snapshot(m) }

// A row read from the table counts its bytes once against
// DispatchQueueBytes: its payloads are slices of its body. A committed
// row's payload is a copy of its own and counts too.
func TestOutgoingSizeCountsARowReadOnce(t *testing.T) {
	payload := make([]byte, 1000)
	one, err := message.Marshal(message.New("t", payload))
	if err != nil {
		t.Fatal(err)
	}
	rec := outbox.Record{ID: 1, Body: one}
	rec.Decode()
	if rec.Err != nil {
		t.Fatal(rec.Err)
	}
	if got := outgoingOf(rec).size(); got != int64(len(one)) {
		t.Errorf("a row read: size %d, want its body's %d", got, len(one))
	}
	pack := outbox.Record{ID: 2, Body: outbox.Pack([][]byte{one, one})}
	pack.Decode()
	if pack.Err != nil {
		t.Fatal(pack.Err)
	}
	if got := outgoingOf(pack).size(); got != int64(2*len(one)) {
		t.Errorf("a pack read: size %d, want its parts' bodies' %d", got, 2*len(one))
	}
	committed := outgoing{msg: message.New("t", payload), body: one}
	if got := committed.size(); got != int64(len(one)+len(payload)) {
		t.Errorf("a committed row: size %d, want body and payload, %d", got, len(one)+len(payload))
	}
}
