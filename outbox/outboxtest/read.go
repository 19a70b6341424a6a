package outboxtest

import (
	"testing"
	"time"

	"github.com/finalbus/final/message"
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

// testRead: a Reader reads the committed rows of the ids it is given that
// are in the table, in id order, decoded, and changes nothing: a row read
// is claimed as before, with no attempt counted.
func testRead(t *testing.T, h Harness) {
	s, db := h.New(t)
	r, ok := s.(outbox.Reader)
	if !ok {
		t.Skip("the store has no outbox.Reader")
	}
	a, ma := insert(t, s, nil, 0)
	gone, _ := insert(t, s, nil, 0)
	b, mb := insertKeyed(t, s, nil, "k", 0)
	if err := s.Delete(ctx, []int64{gone}); err != nil {
		t.Fatal(err)
	}
	tx := h.begin(t, db)
	defer func() { _ = tx.Rollback(ctx) }()
	uncommitted, _ := insert(t, s, tx, 0)
	recs, err := r.Read(ctx, []int64{b, gone, a, uncommitted, b + 1000})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ids(recs); !equal(got, []int64{a, b}) {
		t.Fatalf("Read read ids %v, want %v", got, []int64{a, b})
	}
	for i, m := range []*message.Message{ma, mb} {
		got := recs[i]
		if got.Err != nil || got.Message == nil || got.Message.UUID != m.UUID || got.Message.Key != m.Key ||
			string(got.Message.Payload) != "p" || got.Message.Header.Get("h") != "v" {
			t.Fatalf("Read's row %d: %+v (err %v), want the message %s", got.ID, got.Message, got.Err, m.UUID)
		}
		if got.OrderKey != outbox.OrderKey(m.Topic, m.Key) || got.Attempts != 0 || len(got.Body) == 0 {
			t.Fatalf("Read's row %d: order key %d, attempts %d, %d bytes; want %d, 0 and the body",
				got.ID, got.OrderKey, got.Attempts, len(got.Body), outbox.OrderKey(m.Topic, m.Key))
		}
	}
	if recs, err := r.Read(ctx, nil); err != nil || len(recs) != 0 {
		t.Fatalf("Read(nil) = %v, %v", recs, err)
	}
	// Reading leased nothing: both rows are still available to a claim.
	if got := ids(claim(t, s, "o", 10, time.Minute)); !equal(got, []int64{a, b}) {
		t.Fatalf("claim after Read took %v, want %v", got, []int64{a, b})
	}
}
