package final

import (
	"container/heap"
	"errors"
	"slices"
	"sync"

	"github.com/finalbus/final/mq"
)

// keyOrder keeps the messages of each key (outbox.OrderKey) in outbox
// order on their way to the broker.
//
// While nothing fails, a key's messages are pipelined: each is published
// after the previous one through mq.OrderedPublisher, which refuses a
// publish that could overtake an unconfirmed one sent on a connection since
// lost.
//
// When a message of a key fails, or is refused as out of order, or is left
// in the table because the dispatch queue was full, the key is held: its
// later fast-path messages are parked here, in order, until the relay has
// handed back every row of the key left in the table (the store releases a
// key's rows in id order), and are then published right behind them. Rows
// the relay hands back are sent at once. Parking is bounded by maxParked
// across keys; beyond it a message is left to the relay too. Parked rows
// count against the dispatcher's byte budget, which they share with the
// dispatch queue: a row is counted when it is queued, so parking it adds
// nothing, and bytes tells the budget which rows are parked. When a key
// with parked rows becomes free without a relay row to follow (its stall
// ended with every confirm in, or forget dropped what it waited for), its
// key is sent on freed and the publish loop releases them.
//
// publishLoop calls admit, next and sent, confirmLoop calls settled, producers
// call leftBehind, and the relay calls held and forget, so the state is
// guarded by mu.
type keyOrder struct {
	mu        sync.Mutex
	keys      map[int64]*keyState
	parked    int // rows parked across keys
	maxParked int
	bytes     *byteBudget

	// freed carries keys whose parked rows may go now. Sends never block:
	// a key that does not fit goes with its next message, or the relay
	// claims its rows once they are due.
	freed chan int64
}

type keyState struct {
	inflight int             // published, verdict pending
	last     mq.Confirmation // latest publish; nil when none is in flight
	stalled  bool            // a publish was refused as out of order: wait for the verdicts in flight
	unsent   idSet           // rows left in the table, which the relay sends first
	parked   []outgoing      // fast-path rows waiting for the relay, in order
	isParked map[int64]bool  // the ids in parked
}

func newKeyOrder(maxParked int, bytes *byteBudget) *keyOrder {
	return &keyOrder{keys: map[int64]*keyState{}, maxParked: maxParked, bytes: bytes, freed: make(chan int64, 256)}
}

func (k *keyOrder) state(key int64) *keyState {
	st := k.keys[key]
	if st == nil {
		st = &keyState{unsent: newIDSet(), isParked: map[int64]bool{}}
		k.keys[key] = st
	}
	return st
}

// tidy forgets a key with nothing in flight, held or parked, and reports
// a key whose parked rows may go now.
func (k *keyOrder) tidy(key int64, st *keyState) {
	free := !st.stalled && st.unsent.len() == 0
	switch {
	case free && len(st.parked) > 0:
		select {
		case k.freed <- key:
		default:
		}
	case free && st.inflight == 0:
		delete(k.keys, key)
	}
}

// release returns the parked rows of key if it is free.
func (k *keyOrder) release(key int64) []outgoing {
	k.mu.Lock()
	defer k.mu.Unlock()
	st := k.keys[key]
	if st == nil || st.stalled || st.unsent.len() > 0 {
		return nil
	}
	return k.takeParked(st)
}

// admit takes o from the dispatch queue and returns the rows of its key to
// publish now, in order; refused reports a relay row that cannot be sent
// yet and must be given back to the table.
func (k *keyOrder) admit(o outgoing) (ready []outgoing, refused bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	st := k.state(o.key)
	if o.owner != "" {
		// A relay row: the store released it in order, behind every
		// earlier row of its key still in the table.
		st.unsent.remove(o.id)
		k.unpark(st, o.id)
		if st.stalled {
			st.unsent.add(o.id)
			return nil, true
		}
		ready = []outgoing{o}
		if st.unsent.len() == 0 {
			ready = append(ready, k.takeParked(st)...)
		}
		return ready, false
	}
	if st.stalled || st.unsent.len() > 0 {
		k.park(st, o)
		return nil, false
	}
	return append(k.takeParked(st), o), false
}

func (k *keyOrder) park(st *keyState, o outgoing) {
	if k.parked >= k.maxParked {
		st.unsent.add(o.id) // the relay sends it after OutboxScanAgoTime
		k.bytes.release(o.size())
		return
	}
	st.parked = append(st.parked, o)
	st.isParked[o.id] = true
	k.parked++
	k.bytes.park(o.size())
}

// repark puts rows that could not be published back at the head of their
// key's parked rows.
func (k *keyOrder) repark(key int64, rows []outgoing) {
	k.mu.Lock()
	defer k.mu.Unlock()
	st := k.state(key)
	st.parked = append(slices.Clone(rows), st.parked...)
	for _, r := range rows {
		st.isParked[r.id] = true
	}
	k.parked += len(rows)
	k.bytes.park(sizeOf(rows))
	k.tidy(key, st) // a key free already releases them on freed
}

// giveBack records relay rows that were not sent as unsent, before their
// verdict (errHeldBack) reaches settled: until then a later row of the key
// must not go ahead of them.
func (k *keyOrder) giveBack(rows []outgoing) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, r := range rows {
		k.state(r.key).unsent.add(r.id)
	}
}

func (k *keyOrder) takeParked(st *keyState) []outgoing {
	p := st.parked
	st.parked = nil
	clear(st.isParked)
	k.parked -= len(p)
	k.bytes.unpark(sizeOf(p))
	return p
}

// sizeOf returns the bytes rows count against the byte budget.
func sizeOf(rows []outgoing) int64 {
	var n int64
	for _, r := range rows {
		n += r.size()
	}
	return n
}

func (k *keyOrder) unpark(st *keyState, id int64) {
	if !st.isParked[id] {
		return
	}
	delete(st.isParked, id)
	if i := slices.IndexFunc(st.parked, func(p outgoing) bool { return p.id == id }); i >= 0 {
		k.bytes.dropParked(st.parked[i].size())
		st.parked = slices.Delete(st.parked, i, i+1)
		k.parked--
	}
}

// next reports whether o may be published now and returns the publish it
// must follow, or nil. A fast-path row may not while any row of its key is
// unsent or the key is stalled. A relay row may not while a row of its key
// with a lower id is unsent: the store released the rows in order, but an
// earlier one of the same batch may have failed since.
func (k *keyOrder) next(o outgoing) (prev mq.Confirmation, ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	st := k.state(o.key)
	if st.stalled || (o.owner == "" && st.unsent.len() > 0) {
		return nil, false
	}
	if first, found := st.unsent.min(); o.owner != "" && found && first < o.id {
		return nil, false
	}
	if st.inflight > 0 {
		return st.last, true
	}
	return nil, true
}

// sent records the outcome of publishing o and reports whether later rows
// of its key may follow it now. A refusal as out of order stalls the key
// while publishes of it are in flight.
func (k *keyOrder) sent(o outgoing, conf mq.Confirmation, err error) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	st := k.state(o.key)
	switch {
	case err == nil:
		st.inflight++
		st.last = conf
		return true
	case errors.Is(err, mq.ErrOutOfOrder):
		// Wait for the verdicts in flight. If the last one came in
		// between next and this refusal, none is left to end the stall:
		// the row is held back and goes again behind nothing.
		st.stalled = st.inflight > 0
	default:
		st.unsent.add(o.id)
	}
	return false
}

// settled records the broker's verdict on a row: published reports that
// sent accepted it (so it was in flight), err is the verdict.
func (k *keyOrder) settled(o outgoing, published bool, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	st := k.state(o.key)
	if published {
		st.inflight--
		if st.inflight == 0 {
			st.last = nil
			st.stalled = false
		}
	}
	if err != nil {
		st.unsent.add(o.id)
	} else {
		st.unsent.remove(o.id) // another copy of it may have failed before
	}
	k.tidy(o.key, st)
}

// leftBehind records a committed row of key that the fast path will not
// send (the dispatch queue was full).
func (k *keyOrder) leftBehind(key, id int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.state(key).unsent.add(id)
}

// held returns up to limit ids of rows that keys wait for or have parked,
// for the relay to check against the table.
func (k *keyOrder) held(limit int) []int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	var ids []int64
	for _, st := range k.keys {
		for id := range st.unsent.has {
			if len(ids) == limit {
				return ids
			}
			ids = append(ids, id)
		}
		for _, p := range st.parked {
			if len(ids) == limit {
				return ids
			}
			ids = append(ids, p.id)
		}
	}
	return ids
}

// forget drops rows that are gone from the table: another instance's
// relay sent them. A key whose held rows are all gone resumes with the next
// row it admits.
func (k *keyOrder) forget(gone []int64) {
	if len(gone) == 0 {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	g := make(map[int64]bool, len(gone))
	for _, id := range gone {
		g[id] = true
	}
	for key, st := range k.keys {
		if st.unsent.len() > len(g) {
			for id := range g {
				st.unsent.remove(id)
			}
		} else {
			for id := range st.unsent.has {
				if g[id] {
					st.unsent.remove(id)
				}
			}
		}
		for _, p := range st.parked {
			if g[p.id] {
				delete(st.isParked, p.id)
				k.bytes.dropParked(p.size())
			}
		}
		n := len(st.parked)
		st.parked = slices.DeleteFunc(st.parked, func(p outgoing) bool { return g[p.id] })
		k.parked -= n - len(st.parked)
		k.tidy(key, st)
	}
}

// idSet is a set of row ids that also says quickly whether any is below a
// given id: a map, and a min-heap from which removed ids are dropped when
// they surface.
type idSet struct {
	has  map[int64]bool
	heap int64Heap // a superset of has
}

func newIDSet() idSet { return idSet{has: map[int64]bool{}} }

func (s *idSet) len() int { return len(s.has) }

func (s *idSet) add(id int64) {
	if s.has[id] {
		return
	}
	s.has[id] = true
	heap.Push(&s.heap, id)
}

func (s *idSet) remove(id int64) {
	delete(s.has, id)
	if len(s.heap) > 2*len(s.has)+64 { // mostly removed ids: rebuild
		s.heap = s.heap[:0]
		for id := range s.has {
			s.heap = append(s.heap, id)
		}
		heap.Init(&s.heap)
	}
}

// min returns the lowest id, if any.
func (s *idSet) min() (int64, bool) {
	for len(s.heap) > 0 && !s.has[s.heap[0]] {
		heap.Pop(&s.heap)
	}
	if len(s.heap) == 0 {
		return 0, false
	}
	return s.heap[0], true
}

type int64Heap []int64

func (h int64Heap) Len() int           { return len(h) }
func (h int64Heap) Less(i, j int) bool { return h[i] < h[j] }
func (h int64Heap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *int64Heap) Push(x any)        { *h = append(*h, x.(int64)) }
func (h *int64Heap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
