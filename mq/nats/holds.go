package nats

import (
	"sync"
	"time"
)

// holds are the deliveries a session holds unacknowledged. While the
// connection lives it tells the server, every third of the ack wait, that
// each is still in progress (JetStream's +WPI), up to the maximum hold, so
// the server delivers it again only once this instance is gone or gave up
// on it. It releases the ones whose ack can no longer count (delivery.Stale)
// so that their consumer's slot is free again.
type holds struct {
	ackWait, maxHold time.Duration
	s                *session

	mu sync.Mutex
	m  map[*delivery]struct{}
}

func newHolds(ackWait, maxHold time.Duration, s *session) *holds {
	return &holds{ackWait: ackWait, maxHold: maxHold, s: s, m: map[*delivery]struct{}{}}
}

func (h *holds) add(d *delivery) {
	h.mu.Lock()
	h.m[d] = struct{}{}
	h.mu.Unlock()
}

func (h *holds) remove(d *delivery) {
	h.mu.Lock()
	delete(h.m, d)
	h.mu.Unlock()
}

func (h *holds) list() []*delivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*delivery, 0, len(h.m))
	for d := range h.m {
		out = append(out, d)
	}
	return out
}

// run extends the held deliveries until stop is closed.
func (h *holds) run(stop <-chan struct{}) {
	t := time.NewTicker(h.ackWait / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			for _, d := range h.list() {
				d.extend(now, h.maxHold)
			}
		}
	}
}

// giveBackAll returns every held delivery to its consumer (a nak), for
// the server to deliver it again soon (giveBackDelay).
func (h *holds) giveBackAll() {
	for _, d := range h.list() {
		d.giveBack()
	}
}
