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
	"github.com/finalbus/final/mq/memory"
	"github.com/finalbus/final/outbox"
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
