package outboxtest

import (
	"testing"
	"time"

	"github.com/finalbus/final/outbox"
)

// testReadTx: a TxReader reads, inside a transaction, the committed rows
// and the transaction's own, in id order, decoded; after a rollback the
// transaction's rows are gone.
func testReadTx(t *testing.T, h Harness) {
	s, db := h.New(t)
	r, ok := s.(outbox.TxReader)
	if !ok {
		t.Skip("the store has no outbox.TxReader")
	}
	committed, _ := insert(t, s, nil, time.Hour)
	tx := h.begin(t, db)
	defer func() { _ = tx.Rollback(ctx) }()
	own, m := insertKeyed(t, s, tx, "k", time.Hour)

	readAll := func(tx outbox.Tx) []outbox.Record {
		t.Helper()
		var recs []outbox.Record
		for after := int64(0); ; {
			rec, ok, err := r.ReadTx(ctx, tx, after)
			if err != nil {
				t.Fatalf("ReadTx: %v", err)
			}
			if !ok {
				return recs
			}
			recs = append(recs, rec)
			after = rec.ID
		}
	}
	recs := readAll(tx)
	if got := ids(recs); !equal(got, []int64{committed, own}) {
		t.Fatalf("ReadTx in the transaction read ids %v, want %v", got, []int64{committed, own})
	}
	got := recs[1]
	if got.Err != nil || got.Message == nil || got.Message.UUID != m.UUID || got.Message.Key != "k" || string(got.Message.Payload) != "p" {
		t.Fatalf("ReadTx read %+v (err %v), want the message %s with key k", got.Message, got.Err, m.UUID)
	}
	if got.OrderKey != outbox.OrderKey(m.Topic, "k") || got.Attempts != 0 || len(got.Body) == 0 {
		t.Fatalf("ReadTx read order key %d, attempts %d, %d bytes; want %d, 0 and the body",
			got.OrderKey, got.Attempts, len(got.Body), outbox.OrderKey(m.Topic, "k"))
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	tx = h.begin(t, db)
	if got := ids(readAll(tx)); !equal(got, []int64{committed}) {
		t.Fatalf("ReadTx after the rollback read ids %v, want %v", got, []int64{committed})
	}
}
