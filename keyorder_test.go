package final

import (
	"context"
	"errors"
	"testing"

	"github.com/finalbus/final/mq"
)

type doneConf struct{}

func (doneConf) Wait(context.Context) error { return nil }

func fast(id int64) outgoing    { return outgoing{id: id, key: 7} }
func relayed(id int64) outgoing { return outgoing{id: id, key: 7, owner: "relay"} }

func readyIDs(rows []outgoing) []int64 {
	ids := make([]int64, len(rows))
	for i, r := range rows {
		ids[i] = r.id
	}
	return ids
}

func sameIDs(t *testing.T, got []outgoing, want ...int64) {
	t.Helper()
	g := readyIDs(got)
	if len(g) != len(want) {
		t.Fatalf("rows %v, want %v", g, want)
	}
	for i := range g {
		if g[i] != want[i] {
			t.Fatalf("rows %v, want %v", g, want)
		}
	}
}

// publish runs what publishKeyed does for rows that all succeed.
func publish(t *testing.T, k *keyOrder, rows []outgoing) {
	t.Helper()
	for _, r := range rows {
		if _, ok := k.next(r); !ok {
			t.Fatalf("row %d may not be published", r.id)
		}
		k.sent(r, doneConf{}, nil)
	}
}

// A failed row holds its key: later fast-path rows park, the relay's copy
// of the failed row goes first, and the parked rows follow it.
func TestKeyOrderParksBehindAFailedRow(t *testing.T) {
	k := newKeyOrder(100, &byteBudget{max: 1 << 40})
	ready, _ := k.admit(fast(1))
	sameIDs(t, ready, 1)
	publish(t, k, ready)
	k.settled(fast(1), true, errors.New("nacked"))

	for _, id := range []int64{2, 3} {
		ready, refused := k.admit(fast(id))
		if len(ready) != 0 || refused {
			t.Fatalf("row %d behind a failed row: ready %v, refused %v", id, readyIDs(ready), refused)
		}
	}
	ready, refused := k.admit(relayed(1))
	if refused {
		t.Fatal("relay copy of the failed row refused")
	}
	sameIDs(t, ready, 1, 2, 3)
	publish(t, k, ready)
	for _, id := range []int64{1, 2, 3} {
		k.settled(fast(id), true, nil)
	}
	if len(k.keys) != 0 || k.parked != 0 {
		t.Fatalf("state left after everything settled: %d keys, %d parked", len(k.keys), k.parked)
	}
}

// A relay row whose predecessor in the same batch failed is not published.
func TestKeyOrderRelayRowWaitsForFailedPredecessor(t *testing.T) {
	k := newKeyOrder(100, &byteBudget{max: 1 << 40})
	ready, _ := k.admit(relayed(10))
	sameIDs(t, ready, 10)
	k.sent(ready[0], nil, mq.ErrUnavailable)
	ready, refused := k.admit(relayed(11))
	if refused || len(ready) != 1 {
		t.Fatalf("admit: %v, %v", readyIDs(ready), refused)
	}
	if _, ok := k.next(ready[0]); ok {
		t.Fatal("row 11 may go although row 10 of its batch failed")
	}
	// A later row of another batch after row 10 went: fine.
	k.settled(relayed(10), false, mq.ErrUnavailable)
	ready, _ = k.admit(relayed(10))
	publish(t, k, ready)
	ready, _ = k.admit(relayed(11))
	publish(t, k, ready)
}

// A publish refused as out of order stalls the key until the verdicts in
// flight are in; then the parked rows go.
func TestKeyOrderStallsOnOutOfOrder(t *testing.T) {
	k := newKeyOrder(100, &byteBudget{max: 1 << 40})
	ready, _ := k.admit(fast(1))
	publish(t, k, ready)
	ready, _ = k.admit(fast(2))
	if prev, ok := k.next(ready[0]); !ok || prev == nil {
		t.Fatalf("row 2 should follow row 1: prev %v, ok %v", prev, ok)
	}
	k.sent(ready[0], nil, mq.ErrOutOfOrder)
	k.repark(7, ready)
	if ready, _ := k.admit(fast(3)); len(ready) != 0 {
		t.Fatalf("stalled key published %v", readyIDs(ready))
	}
	k.settled(fast(1), true, nil) // row 1 was confirmed after all
	select {
	case key := <-k.freed:
		sameIDs(t, k.release(key), 2, 3)
	default:
		t.Fatal("the key became free with parked rows but was not reported")
	}
	ready, _ = k.admit(fast(4))
	sameIDs(t, ready, 4)
}

// refuseAfterVerdict publishes row 1 of key 7, lets row 2 follow it, and
// settles row 1 with verdict before row 2's publish is refused as out of
// order: the race in which the verdict a refusal waits for is already in.
// It returns row 2.
func refuseAfterVerdict(t *testing.T, k *keyOrder, row func(int64) outgoing, verdict error) []outgoing {
	t.Helper()
	ready, _ := k.admit(row(1))
	publish(t, k, ready)
	ready, _ = k.admit(row(2))
	if prev, ok := k.next(ready[0]); !ok || prev == nil {
		t.Fatalf("row 2 should follow row 1: prev %v, ok %v", prev, ok)
	}
	k.settled(row(1), true, verdict)
	if k.sent(ready[0], nil, mq.ErrOutOfOrder) {
		t.Fatal("a refused publish reported as sent")
	}
	return ready
}

// The verdict a refused publish was to wait for may come in between next
// and the refusal (the previous publish failed, or its connection was lost
// after its confirm): with nothing left in flight to clear it, the key is
// not stalled, so the relay's copies of its rows go again. Once it stalled
// here for good: every relay row of the key was given back, round after
// round, and its parked rows never went.
func TestKeyOrderOutOfOrderAfterTheLastVerdictDoesNotStall(t *testing.T) {
	k := newKeyOrder(100, &byteBudget{max: 1 << 40})
	refuseAfterVerdict(t, k, relayed, errors.New("unroutable"))
	k.settled(relayed(2), false, errHeldBack) // given back to the table
	if ready, _ := k.admit(fast(3)); len(ready) != 0 {
		t.Fatalf("fast-path row 3 overtook the unsent rows 1 and 2: %v", readyIDs(ready))
	}
	ready, refused := k.admit(relayed(1))
	if refused {
		t.Fatal("the relay's copy of row 1 was refused: the key stalled with nothing in flight")
	}
	sameIDs(t, ready, 1)
	publish(t, k, ready)
	k.settled(relayed(1), true, nil)
	ready, refused = k.admit(relayed(2))
	if refused {
		t.Fatal("the relay's copy of row 2 was refused")
	}
	sameIDs(t, ready, 2, 3)
}

// The same race on the fast path, where the previous publish was confirmed
// (a provider that cannot pipeline refuses every publish behind an
// unconfirmed one): the refused row is parked again and goes on its own,
// behind nothing.
func TestKeyOrderOutOfOrderAfterAConfirmSendsTheParkedRow(t *testing.T) {
	k := newKeyOrder(100, &byteBudget{max: 1 << 40})
	k.repark(7, refuseAfterVerdict(t, k, fast, nil))
	select {
	case key := <-k.freed:
		rows := k.release(key)
		sameIDs(t, rows, 2)
		if prev, ok := k.next(rows[0]); !ok || prev != nil {
			t.Fatalf("row 2 after its refusal: prev %v, ok %v; want to go behind nothing", prev, ok)
		}
	default:
		t.Fatal("the refused row was parked with nothing to release it")
	}
}

// A relay row held back is unsent at once, not only when its verdict is
// settled: the publish loop may admit the next row of its key before the
// confirm loop gets to it, and that row must not go first.
func TestKeyOrderHeldBackRelayRowHoldsItsKeyAtOnce(t *testing.T) {
	k := newKeyOrder(100, &byteBudget{max: 1 << 40})
	// A provider that cannot pipeline refuses row 2 though row 1 was
	// confirmed; holdBack gives it back before its flight is settled.
	k.giveBack(refuseAfterVerdict(t, k, relayed, nil))
	ready, refused := k.admit(relayed(3))
	if refused {
		return // held back too: fine
	}
	if _, ok := k.next(ready[0]); ok {
		t.Fatal("row 3 may be published while row 2 of its key waits to be sent again")
	}
}

// Parking is bounded; beyond it rows are left to the relay, and rows gone
// from the table (another relay sent them) are forgotten.
func TestKeyOrderBoundsParkingAndForgets(t *testing.T) {
	k := newKeyOrder(1, &byteBudget{max: 1 << 40})
	k.leftBehind(7, 1)
	k.admit(fast(2)) // parked
	k.admit(fast(3)) // over the bound: left to the relay
	if k.parked != 1 {
		t.Fatalf("parked %d, want 1", k.parked)
	}
	held := k.held(10)
	if len(held) != 3 {
		t.Fatalf("held %v, want 3 ids", held)
	}
	k.forget([]int64{1, 2, 3})
	if len(k.keys) != 0 || k.parked != 0 {
		t.Fatalf("state left after forget: %d keys, %d parked", len(k.keys), k.parked)
	}
}

func TestIDSetMin(t *testing.T) {
	s := newIDSet()
	if _, ok := s.min(); ok {
		t.Fatal("empty set has a minimum")
	}
	for _, id := range []int64{5, 3, 9, 3, 7} {
		s.add(id)
	}
	s.remove(3)
	if m, ok := s.min(); !ok || m != 5 || s.len() != 3 {
		t.Fatalf("min %d (%v), len %d; want 5, 3", m, ok, s.len())
	}
	s.add(3)
	if m, _ := s.min(); m != 3 {
		t.Fatalf("min %d after re-adding 3", m)
	}
	for i := int64(100); i < 400; i++ { // churn through the rebuild
		s.add(i)
		s.remove(i)
	}
	s.remove(3)
	s.remove(5)
	if m, ok := s.min(); !ok || m != 7 || s.len() != 2 {
		t.Fatalf("min %d (%v), len %d; want 7, 2", m, ok, s.len())
	}
}
