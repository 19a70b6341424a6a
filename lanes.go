package final

import (
	"time"

	"sync"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// task is one delivery on its way to a worker, decoded once.
type task struct {
	d   mq.Delivery
	msg *message.Message // nil when err is set
	err error            // decoding error
	rt  *route           // nil when no handler matches
	// received is when the router took the delivery: the broker's hold
	// limit counts from about then.
	received time.Time
}

// lanes serialises the tasks of an Ordered subscription per key: a key's
// next task waits until its current one is finished (handled, or
// dead-lettered after its retries). Keys are independent of each other.
type lanes struct {
	mu      sync.Mutex
	waiting map[string][]task // by lane; present while the lane is busy
}

func newLanes() *lanes { return &lanes{waiting: map[string][]task{}} }

func laneOf(m *message.Message) string { return m.Topic + "\x00" + m.Key }

// enter reports whether t may run now; otherwise it is queued behind the
// task its lane is running.
func (l *lanes) enter(t task) bool {
	id := laneOf(t.msg)
	l.mu.Lock()
	defer l.mu.Unlock()
	if q, busy := l.waiting[id]; busy {
		l.waiting[id] = append(q, t)
		return false
	}
	l.waiting[id] = nil
	return true
}

// leave ends the running task of m's lane and returns the next one to run,
// if any; the lane stays busy until it has none.
func (l *lanes) leave(m *message.Message) (task, bool) {
	id := laneOf(m)
	l.mu.Lock()
	defer l.mu.Unlock()
	q := l.waiting[id]
	if len(q) == 0 {
		delete(l.waiting, id)
		return task{}, false
	}
	next := q[0]
	l.waiting[id] = q[1:]
	return next, true
}
