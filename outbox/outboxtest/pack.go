package outboxtest

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox"
)

// testPack: a pack row (outbox.Pack) comes back from Claim, Read and ReadTx
// with every message decoded, in order, each with its body; a row of one
// message beside it comes back as one. One of the pack's messages is
// larger than 64 KiB, so its length takes four bytes.
func testPack(t *testing.T, h Harness) {
	s, db := h.New(t)
	_, single := insert(t, s, nil, 0)
	msgs := []*message.Message{
		message.New("topic.p", []byte("first")),
		message.New("topic.p", bytes.Repeat([]byte("x"), 70_000)),
		message.New("topic.p", nil),
	}
	msgs[0].Header.Set("h", "v")
	bodies := make([][]byte, len(msgs))
	for i, m := range msgs {
		var err error
		if bodies[i], err = message.Marshal(m); err != nil {
			t.Fatal(err)
		}
	}
	tx := h.begin(t, db)
	pack, err := s.Insert(ctx, tx, outbox.Row{Body: outbox.Pack(bodies)})
	if err != nil {
		t.Fatalf("Insert: %v", err)
	}
	if r, ok := s.(outbox.TxReader); ok {
		rec, found, err := r.ReadTx(ctx, tx, pack-1)
		if err != nil || !found {
			t.Fatalf("ReadTx: found %v, %v", found, err)
		}
		checkPack(t, "ReadTx", rec, msgs, bodies)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if r, ok := s.(outbox.Reader); ok {
		recs, err := r.Read(ctx, []int64{pack})
		if err != nil || len(recs) != 1 {
			t.Fatalf("Read: %d records, %v", len(recs), err)
		}
		checkPack(t, "Read", recs[0], msgs, bodies)
	}
	recs, err := s.Claim(ctx, "me", 10, 0, time.Hour)
	if err != nil || len(recs) != 2 {
		t.Fatalf("Claim: %d records, %v; want 2", len(recs), err)
	}
	if one := recs[0]; one.Err != nil || one.Pack != nil || one.Message == nil || one.Message.UUID != single.UUID || len(one.Parts()) != 1 {
		t.Fatalf("Claim: the row of one message came back as %+v", one)
	}
	checkPack(t, "Claim", recs[1], msgs, bodies)
}

// checkPack checks that rec is the pack of msgs encoded as bodies.
func checkPack(t *testing.T, how string, rec outbox.Record, msgs []*message.Message, bodies [][]byte) {
	t.Helper()
	if rec.Err != nil || rec.Message != nil || len(rec.Pack) != len(msgs) {
		t.Fatalf("%s: the pack came back with err %v, message %v, %d parts; want %d parts", how, rec.Err, rec.Message, len(rec.Pack), len(msgs))
	}
	for i, p := range rec.Parts() {
		m := msgs[i]
		if got, want := fmt.Sprint(p.Message.UUID, p.Message.Topic, p.Message.Header), fmt.Sprint(m.UUID, m.Topic, m.Header); got != want {
			t.Fatalf("%s: part %d is %s, want %s", how, i, got, want)
		}
		if !bytes.Equal(p.Message.Payload, m.Payload) || !bytes.Equal(p.Body, bodies[i]) {
			t.Fatalf("%s: part %d: payload or body differs (%d and %d bytes, want %d and %d)", how, i, len(p.Message.Payload), len(p.Body), len(m.Payload), len(bodies[i]))
		}
	}
}
