package outboxtest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/finalbus/final/outbox"
)

// testDeclarations runs for stores with outbox.SubscriptionRecorder: each
// instance's declarations are kept apart, replaced whole, live while
// refreshed, not live once retired, and gone once forgotten. Topics
// compare byte for byte, as routing keys do.
func testDeclarations(t *testing.T, h Harness) {
	s, _ := h.New(t)
	rec, ok := s.(outbox.SubscriptionRecorder)
	if !ok {
		t.Skip("the store has no outbox.SubscriptionRecorder")
	}
	owner := func(o string) string { return fmt.Sprintf("%s-%d", o, time.Now().UnixNano()) }
	a, b := owner("a"), owner("b")
	sub := func(topic, kind string) outbox.Subscription { return outbox.Subscription{Topic: topic, Kind: kind} }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	list := func() []string {
		t.Helper()
		ds, err := rec.Declarations(ctx, time.Minute)
		must(err)
		var out []string
		for _, d := range ds {
			out = append(out, fmt.Sprintf("%s %s %s %v", d.Owner[:1], d.Topic, d.Kind, d.Live))
		}
		slices.Sort(out)
		return out
	}
	want := func(w ...string) {
		t.Helper()
		slices.Sort(w)
		if got := list(); !slices.Equal(got, w) {
			t.Fatalf("declarations %q, want %q", got, w)
		}
	}
	must(rec.Declare(ctx, a, []outbox.Subscription{sub("t1", outbox.KindCompeting), sub("T1", outbox.KindCompeting), sub("t2", outbox.KindOrdered)}))
	must(rec.Declare(ctx, b, []outbox.Subscription{sub("t1", outbox.KindCompeting)}))
	want("a t1 competing true", "a T1 competing true", "a t2 ordered true", "b t1 competing true")
	must(rec.Retire(ctx, a))
	want("a t1 competing false", "a T1 competing false", "a t2 ordered false", "b t1 competing true")
	must(rec.Refresh(ctx, a))
	want("a t1 competing true", "a T1 competing true", "a t2 ordered true", "b t1 competing true")
	must(rec.Declare(ctx, a, []outbox.Subscription{sub("t3", outbox.KindBroadcast)}))
	want("a t3 broadcast true", "b t1 competing true")
	must(rec.Forget(ctx, []string{a}))
	want("b t1 competing true")
}

// testRedeliveries runs for stores with outbox.RedeliveryCounter: a count
// per topic and UUID, from one, back to one once forgotten.
func testRedeliveries(t *testing.T, h Harness) {
	s, _ := h.New(t)
	rc, ok := s.(outbox.RedeliveryCounter)
	if !ok {
		t.Skip("the store has no outbox.RedeliveryCounter")
	}
	uuid := fmt.Sprintf("u-%d", time.Now().UnixNano())
	count := func(topic string, want int) {
		t.Helper()
		n, err := rc.CountRedelivery(ctx, topic, uuid)
		if err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Fatalf("CountRedelivery(%s) = %d, want %d", topic, n, want)
		}
	}
	count("t", 1)
	count("t", 2)
	count("other", 1) // per topic
	count("t", 3)
	if err := rc.ForgetRedeliveries(ctx, "t", uuid); err != nil {
		t.Fatal(err)
	}
	count("t", 1)
	count("other", 2)
	for _, topic := range []string{"t", "other"} {
		if err := rc.ForgetRedeliveries(ctx, topic, uuid); err != nil {
			t.Fatal(err)
		}
	}
}
