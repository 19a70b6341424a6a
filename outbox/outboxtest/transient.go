package outboxtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox"
)

// testTransient: a call that ran out of time says it may succeed if made
// again (outbox.ErrTransient), for the reads and inserts the bus retries
// (splitting a pack reads it back and inserts its messages) as for the
// writes its acker retries. Each call gets a context past its deadline,
// so it fails the same way on every store: this checks that every call
// passes its errors through the store's classification, not what the
// classification says of a driver's errors.
func testTransient(t *testing.T, h Harness) {
	s, db := h.New(t)
	id, _ := insert(t, s, nil, time.Hour)
	body, err := message.Marshal(message.New("topic.a", []byte("p")))
	if err != nil {
		t.Fatal(err)
	}
	late, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	calls := map[string]func() error{
		"Insert": func() error { _, err := s.Insert(late, nil, outbox.Row{Body: body}); return err },
		"InsertAll": func() error {
			_, err := outbox.InsertAll(late, s, nil, []outbox.Row{{Body: body}, {Body: body}})
			return err
		},
		"Delete":  func() error { return s.Delete(late, []int64{id}) },
		"Fail":    func() error { return s.Fail(late, "owner", []int64{id}, "cause") },
		"Release": func() error { return s.Release(late, "owner", []int64{id}) },
	}
	if r, ok := s.(outbox.Reader); ok {
		calls["Read"] = func() error { _, err := r.Read(late, []int64{id}); return err }
	}
	if r, ok := s.(outbox.TxReader); ok {
		calls["ReadTx"] = func() error {
			tx := h.begin(t, db)
			defer func() { _ = tx.Rollback(ctx) }()
			_, _, err := r.ReadTx(late, tx, 0)
			return err
		}
	}
	for name, call := range calls {
		err := call()
		if err == nil {
			t.Errorf("%s with a context past its deadline succeeded", name)
			continue
		}
		if !errors.Is(err, outbox.ErrTransient) {
			t.Errorf("%s ran out of time: %v; want it to wrap outbox.ErrTransient", name, err)
		}
	}
	if n := length(t, s); n != 1 {
		t.Fatalf("%d rows after the calls that failed, want 1", n)
	}
}
