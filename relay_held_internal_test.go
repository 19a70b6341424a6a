package final

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox"
)

// holdingStore hands out one held claim of the given records, then
// nothing, and records how the claim ended. Its Store methods count what
// the acker writes.
type holdingStore struct {
	countingStore
	commitErr error

	mu       sync.Mutex
	recs     []outbox.Record
	ended    bool
	rolled   bool
	commit   []int64            // ids the claim deleted at its commit
	failures map[string][]int64 // ids the claim recorded as failed, by cause
}

func (s *holdingStore) ClaimHeld(context.Context, string, int, int, time.Duration) (outbox.Held, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recs == nil {
		return nil, nil
	}
	h := &fakeHeld{s: s, recs: s.recs}
	s.recs = nil
	return h, nil
}

func (s *holdingStore) done() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended
}

type fakeHeld struct {
	s    *holdingStore
	recs []outbox.Record
}

func (h *fakeHeld) Records() []outbox.Record { return h.recs }

func (h *fakeHeld) Fail(_ context.Context, ids []int64, cause string) error {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	if h.s.failures == nil {
		h.s.failures = map[string][]int64{}
	}
	h.s.failures[cause] = append(h.s.failures[cause], ids...)
	return nil
}

func (h *fakeHeld) Commit(_ context.Context, ids []int64) error {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	h.s.ended = true
	if h.s.commitErr != nil {
		return h.s.commitErr
	}
	h.s.commit = slices.Sorted(slices.Values(ids))
	return nil
}

func (h *fakeHeld) Rollback() error {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	h.s.rolled = true
	return nil
}

// heldRecords are two routable rows, one no queue is bound to and one
// that cannot be decoded.
func heldRecords() []outbox.Record {
	rec := func(id int64, topic string) outbox.Record {
		return outbox.Record{ID: id, Message: message.New(topic, []byte("p")), Body: []byte("b")}
	}
	return []outbox.Record{rec(1, "bound"), rec(2, "nobody"), rec(3, "bound"),
		{ID: 4, Body: []byte{0xc1}, Err: message.ErrDecode}}
}

// A held claim ends once every row has its verdict: its transaction
// deletes the confirmed rows and records the failures, and the acker
// writes nothing.
func TestHeldClaimDeletesConfirmedRowsAndRecordsFailures(t *testing.T) {
	o := DefaultOptions().WithOutboxScanInterval(time.Hour)
	o.Logger = discardLogger()
	store := &holdingStore{recs: heldRecords()}
	runPipeline(t, store, memoryProvider(t, o), o)
	testenv.Eventually(t, 10*time.Second, store.done, "the held claim ended")

	store.mu.Lock()
	defer store.mu.Unlock()
	if !slices.Equal(store.commit, []int64{1, 3}) {
		t.Fatalf("the claim deleted %v, want the confirmed rows [1 3]", store.commit)
	}
	var failed []int64
	for _, ids := range store.failures {
		failed = append(failed, ids...)
	}
	if slices.Sort(failed); !slices.Equal(failed, []int64{2, 4}) || len(store.failures) != 2 {
		t.Fatalf("the claim recorded failures %v, want rows 2 (unroutable) and 4 (undecodable) under their own causes", store.failures)
	}
	if d, f := store.deleted.Load(), store.failed.Load(); d != 0 || f != 0 {
		t.Fatalf("the acker deleted %d and failed %d rows, want none: the claim writes them", d, f)
	}
}

// A held claim that cannot commit is rolled back, and the acker deletes
// its confirmed rows and records its failures instead, as for the fast
// path's rows.
func TestHeldClaimThatCannotCommitLeavesItsRowsToTheAcker(t *testing.T) {
	o := DefaultOptions().WithOutboxScanInterval(time.Hour)
	o.Logger = discardLogger()
	store := &holdingStore{recs: heldRecords(), commitErr: errors.New("connection lost")}
	runPipeline(t, store, memoryProvider(t, o), o)
	testenv.Eventually(t, 10*time.Second, func() bool {
		return store.deleted.Load() == 2 && store.failed.Load() == 2
	}, "the acker deleted the 2 confirmed rows and recorded the 2 failures")
	store.mu.Lock()
	defer store.mu.Unlock()
	if !store.rolled {
		t.Fatal("the claim that failed to commit was not rolled back")
	}
}

// Rows of a held claim whose window closed before their publish (here at
// once: the lease is shorter than PublishTimeout) are not sent; they still
// get their verdict, so the claim ends, leaving them as they were.
func TestHeldClaimEndsWhenItsRowsMissTheirWindow(t *testing.T) {
	o := DefaultOptions().WithOutboxScanInterval(time.Hour)
	o.OutboxLease = o.PublishTimeout / 2
	o.Logger = discardLogger()
	recs := heldRecords()[:3:3] // the decodable ones
	store := &holdingStore{recs: recs}
	runPipeline(t, store, memoryProvider(t, o), o)
	testenv.Eventually(t, 10*time.Second, store.done, "the held claim ended")
	store.mu.Lock()
	defer store.mu.Unlock()
	if len(store.commit) != 0 || len(store.failures) != 0 {
		t.Fatalf("the claim deleted %v and recorded failures %v, want neither: no row was sent", store.commit, store.failures)
	}
}

// Held claims keep NumAcker + 1 of a bounded pool free, down to none
// (every claim leased): claims that took the acker's connections would
// stop it, and with it the confirms their own rows wait for.
func TestHeldClaimsFitThePool(t *testing.T) {
	o := DefaultOptions() // 2 held claims, 2 ackers
	for _, c := range []struct{ maxOpen, want int }{{0, 2}, {100, 2}, {5, 2}, {4, 1}, {3, 0}, {1, 0}} {
		if got := heldClaimsFor(o, c.maxOpen); got != c.want {
			t.Errorf("held claims on a pool of %d = %d, want %d", c.maxOpen, got, c.want)
		}
	}
}
