package final

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/memory"
	"github.com/finalbus/final/outbox"
)

// countingStore is an outbox.Store that only counts what the acker asks of
// it: it isolates the dispatch path from the database.
type countingStore struct{ deleted, failed, released atomic.Int64 }

func (*countingStore) Migrate(context.Context) error { return nil }
func (*countingStore) Insert(context.Context, outbox.Tx, outbox.Row) (int64, error) {
	return 0, nil
}
func (*countingStore) Remaining(context.Context, []int64) ([]int64, error) { return nil, nil }
func (*countingStore) Claim(context.Context, string, int, int, time.Duration) ([]outbox.Record, error) {
	return nil, nil
}
func (s *countingStore) Delete(_ context.Context, ids []int64) error {
	s.deleted.Add(int64(len(ids)))
	return nil
}
func (s *countingStore) Fail(_ context.Context, _ string, ids []int64, _ string) error {
	s.failed.Add(int64(len(ids)))
	return nil
}
func (s *countingStore) Release(_ context.Context, _ string, ids []int64) error {
	s.released.Add(int64(len(ids)))
	return nil
}
func (*countingStore) Purge(context.Context) (int64, error) { return 0, nil }
func (*countingStore) Len(context.Context) (int, error)     { return 0, nil }

// BenchmarkDispatch measures the fast path after commit: snapshot, queue,
// publish to the in-memory provider, wait for its confirm, and the acker's
// batched delete.
func BenchmarkDispatch(b *testing.B) {
	broker := memory.NewBroker()
	p := broker.Provider()
	if err := p.Init(context.Background(), mq.Config{Service: "bench", Topics: []string{"t"}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	deliveries, _ := p.Consume(ctx)
	go func() { // drain the in-memory queue so it never fills
		for d := range deliveries {
			_ = d.Ack()
		}
	}()
	defer cancel()

	o := DefaultOptions()
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	store := &countingStore{}
	a := newAcker(context.Background(), store, o)
	d := newDispatcher(context.Background(), p, a, o)
	a.start(o.NumAcker)
	d.start()
	m := message.New("t", make([]byte, 256))

	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		out, err := snapshot(m)
		if err != nil {
			b.Fatal(err)
		}
		out.id = int64(i + 1)
		if err := d.submit(context.Background(), out); err != nil {
			b.Fatal(err)
		}
	}
	d.close()
	d.wait()
	a.closeAndWait()
	b.StopTimer()
	if got := store.deleted.Load() + store.failed.Load(); got != int64(b.N) {
		b.Fatalf("acker saw %d of %d messages", got, b.N)
	}
}

// BenchmarkSnapshot measures what a publish costs the bus before the
// database and the broker: the message encoded for the outbox row, and
// the copy the fast path sends (whole in the CloudEvents format).
func BenchmarkSnapshot(b *testing.B) {
	for _, f := range []mq.WireFormat{mq.Envelope, mq.CloudEvents} {
		b.Run(f.String(), func(b *testing.B) {
			bus := &Bus{opt: DefaultOptions().WithWireFormat(f)}
			m := message.New("t", make([]byte, 256))
			m.Header.Set("tenant", "acme")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bus.snapshot(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
