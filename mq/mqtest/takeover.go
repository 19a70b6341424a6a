package mqtest

import (
	"strconv"
	"testing"
	"time"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// testTakeoverAfterDeath: two instances of a service compete for a topic;
// one acknowledges what it receives, the other holds its deliveries and is
// closed. The survivor then receives each held message, marked
// redelivered, and nothing else again: nothing is lost, and nothing
// acknowledged comes back.
func testTakeoverAfterDeath(t *testing.T, h Harness) {
	svc := h.Service(t)
	topic := svc + ".work"
	dying := start(t, h, svc, topic)
	dyingCh := consume(t, dying)
	// The first message makes sure the dying instance holds one.
	first := message.New(topic, []byte("0"))
	publish(t, dying, first)
	if _, got := next(t, dyingCh); got.UUID != first.UUID {
		t.Fatalf("got %s, want %s", got.UUID, first.UUID)
	}
	survivor := start(t, h, svc, topic)
	survivorCh := consume(t, survivor)
	const n = 12
	sent := map[string]bool{first.UUID: true}
	for i := 1; i < n; i++ {
		m := message.New(topic, []byte(strconv.Itoa(i)))
		sent[m.UUID] = true
		publish(t, survivor, m)
	}

	held, acked := map[string]bool{first.UUID: true}, map[string]bool{}
	deadline := time.After(wait)
	for len(held)+len(acked) < n {
		select {
		case d := <-dyingCh:
			m := decode(t, d)
			if !sent[m.UUID] || held[m.UUID] {
				t.Fatalf("the dying instance received %s (%q): unknown or twice", m.UUID, m.Payload)
			}
			held[m.UUID] = true
		case d := <-survivorCh:
			m := decode(t, d)
			if !sent[m.UUID] || held[m.UUID] || acked[m.UUID] {
				t.Fatalf("the survivor received %s (%q): unknown, held by the other instance, or twice", m.UUID, m.Payload)
			}
			if err := d.Ack(); err != nil {
				t.Fatal(err)
			}
			acked[m.UUID] = true
		case <-deadline:
			t.Fatalf("%d held and %d acknowledged of %d messages", len(held), len(acked), n)
		}
	}
	if err := dying.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for len(held) > 0 {
		d, m := next(t, survivorCh)
		if !held[m.UUID] {
			t.Fatalf("after the other instance closed the survivor received %s (%q), which it had acknowledged or was never sent", m.UUID, m.Payload)
		}
		if !d.Redelivered() {
			t.Errorf("%s (%q), held by the closed instance, came again not marked redelivered", m.UUID, m.Payload)
		}
		if err := d.Ack(); err != nil {
			t.Fatal(err)
		}
		delete(held, m.UUID)
	}
	// Nothing more: an acknowledged message coming back would come first.
	sentinel := message.New(topic, []byte("sentinel"))
	publish(t, survivor, sentinel)
	if d, m := next(t, survivorCh); m.UUID != sentinel.UUID {
		t.Fatalf("got %s (%q), want the sentinel: a message came twice", m.UUID, m.Payload)
	} else {
		_ = d.Ack()
	}
}

// decode returns the message of d.
func decode(t *testing.T, d mq.Delivery) *message.Message {
	t.Helper()
	m, err := d.Message()
	if err != nil {
		t.Fatalf("decode delivery: %v", err)
	}
	return m
}
