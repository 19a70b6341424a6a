package mqtest

import (
	"context"
	"testing"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// testReplayScope runs for providers with mq.DeadLetterQueue: replaying a
// dead letter sends it back to the service that dead-lettered it, not to
// the other services subscribed to its topic, which handled it already,
// whatever their kind of subscription. Three services take a topic, two
// plain and one Ordered; a plain one, then the Ordered one, dead-letters a
// keyed message and replays it: the replaying service receives it again,
// and the next delivery of each of the others is a later message (queues
// are FIFO, and a key's shard too: a replayed copy would come first).
func testReplayScope(t *testing.T, h Harness) {
	mine, theirs, ordered := h.Service(t), h.Service(t), h.Service(t)
	topic := mine + ".t"
	services := []struct {
		name string
		p    mq.IProvider
		ch   <-chan mq.Delivery
	}{
		{name: "plain " + mine, p: start(t, h, mine, topic)},
		{name: "plain " + theirs, p: start(t, h, theirs, topic)},
		{name: "ordered " + ordered, p: startConfig(t, h, mq.Config{Service: ordered, Ordered: []string{topic}})},
	}
	if _, ok := services[0].p.(mq.DeadLetterQueue); !ok {
		t.Skip("the provider has no mq.DeadLetterQueue")
	}
	for i := range services {
		services[i].ch = consume(t, services[i].p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for _, replayer := range []int{0, 2} {
		m := message.New(topic, []byte("replayed to one service"), message.WithKey("k"))
		publish(t, services[0].p, m)
		for i, s := range services {
			d, got := next(t, s.ch)
			if got.UUID != m.UUID {
				t.Fatalf("%s got %s, want %s", s.name, got.UUID, m.UUID)
			}
			if i != replayer {
				_ = d.Ack()
			} else if err := d.DeadLetter(ctx, "dead"); err != nil {
				t.Fatal(err)
			}
		}
		r := services[replayer]
		if n, err := r.p.(mq.DeadLetterQueue).ReplayDeadLetters(ctx, 10); err != nil || n != 1 {
			t.Fatalf("%s: ReplayDeadLetters = %d, %v; want 1", r.name, n, err)
		}
		d, got := next(t, r.ch)
		if got.UUID != m.UUID {
			t.Fatalf("%s: replayed %s, want %s", r.name, got.UUID, m.UUID)
		}
		_ = d.Ack()
		sentinel := message.New(topic, []byte("sentinel"), message.WithKey("k"))
		publish(t, services[0].p, sentinel)
		for _, s := range services {
			d, got := next(t, s.ch)
			if got.UUID != sentinel.UUID {
				t.Fatalf("%s received %s (%q) again, replayed by %s: replay must reach the replaying service only",
					s.name, got.UUID, got.Payload, r.name)
			}
			_ = d.Ack()
		}
	}
}
