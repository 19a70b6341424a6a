package amqp

import (
	"errors"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// acks acknowledges the deliveries of one consuming channel, several in
// one frame where it can: a run of settled delivery tags from the lowest
// unsettled one goes as one multiple ack, and only a tag settled ahead of
// an earlier one still in a handler goes alone. RabbitMQ spends much of a
// consumer's CPU on ack frames: on this project's benchmark machine a raw
// consumer ran twice as fast with one ack per 16 or 32 deliveries, and
// the library's consumer 1.4 times as fast with these.
//
// An ack is written about ackLinger later (more while an earlier write
// is under way), with those settled meanwhile; the call returns at once, unless most asynchronous acks already wait to be
// written: then it waits for its write like a synchronous one. A consumer
// that dies (SIGKILL, a cut link) therefore loses at most most acks beyond
// those of the deliveries still in its handlers, and those deliveries come
// again: the duplicate bound the README gives and the fault suite checks
// (per consuming channel; a Provider consumes on one). Past maxTracked
// (below) a repeated ack of one delivery is no longer recognised: the
// bus settles each delivery once.
// A synchronous ack (for an Ordered topic's shard, where the next message
// of a key must not be handled before its predecessor's ack is out) is
// written at once, with whatever waits, and the call returns when it is
// written.
//
// A nack (Requeue) is written at once, alone, and only then counts as
// settled: no multiple ack can cover a delivery before its nack is out.
//
// The goroutine that writes belongs to the acks and ends when the channel
// closes. It tracks each tag settled past the lowest unsettled one; past
// maxTracked of them (a handler holding one delivery while thousands of
// later ones are settled) it stops batching for the channel's life and
// writes each ack alone, as before.
type acks struct {
	ch channelAcker

	mu      sync.Mutex
	low     uint64                // every tag below low is settled with the broker
	settled map[uint64]bool       // tags from low on: true while their ack waits to be written, false once settled with the broker
	queued  []uint64              // the tags whose ack waits, in the order they came
	waiting map[uint64]chan error // the synchronous Acks, told the write's error once their tag's ack is written
	closed  bool                  // the channel closed: nothing more is written
	alone   bool                  // past maxTracked: every ack is written alone

	most    int // the most asynchronous acks that may wait unwritten (WithAckBatch)
	pending int // asynchronous acks queued for the next flush
	writing int // asynchronous acks the flush under way is writing

	wake   chan struct{} // an ack waits
	urgent chan struct{} // a synchronous ack waits
	stop   chan struct{} // closed by close
	once   sync.Once
	done   chan struct{}
}

// ackLinger is how long an asynchronous ack waits for others to go with
// it (longer while an earlier write is under way).
const ackLinger = 500 * time.Microsecond

// channelAcker is what acks needs of an *amqp.Channel.
type channelAcker interface {
	Ack(tag uint64, multiple bool) error
	Nack(tag uint64, multiple, requeue bool) error
}

// maxTracked bounds the settled tags tracked past the lowest unsettled one.
const maxTracked = 1 << 16

var errAcksClosed = errors.New("amqp: ack: the channel is closed")

// newAcks starts the acks of ch until closed (its NotifyClose) is closed;
// at most most asynchronous acks wait unwritten at any time (0: every ack
// waits for its write).
func newAcks(ch channelAcker, closed <-chan *amqp.Error, most int) *acks {
	a := &acks{ch: ch, low: 1, most: most, settled: map[uint64]bool{}, waiting: map[uint64]chan error{},
		wake: make(chan struct{}, 1), urgent: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go a.run(closed)
	return a
}

// ack acknowledges tag; with wait, or when most asynchronous acks wait
// already, it returns once the acknowledgement is written (or could not be).
func (a *acks) ack(tag uint64, wait bool) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return errAcksClosed
	}
	if a.alone {
		a.mu.Unlock()
		return a.ch.Ack(tag, false)
	}
	if _, seen := a.settled[tag]; seen || tag < a.low {
		a.mu.Unlock()
		return nil // settled already
	}
	a.settled[tag] = true
	a.queued = append(a.queued, tag)
	if !wait && a.pending+a.writing < a.most {
		a.pending++
		full := a.pending+a.writing == a.most
		a.mu.Unlock()
		if full {
			signal(a.urgent) // no need to linger: the next one would wait
		} else {
			signal(a.wake)
		}
		return nil
	}
	written := make(chan error, 1)
	a.waiting[tag] = written
	a.mu.Unlock()
	signal(a.urgent)
	return <-written
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// nack rejects tag (requeue: back to its queue) at once, alone.
func (a *acks) nack(tag uint64, requeue bool) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return errAcksClosed
	}
	if _, seen := a.settled[tag]; seen || tag < a.low {
		a.mu.Unlock()
		return nil // settled already
	}
	a.mu.Unlock()
	if err := a.ch.Nack(tag, false, requeue); err != nil {
		return err
	}
	a.mu.Lock()
	if !a.alone {
		a.settled[tag] = false // only now: a multiple ack may cover it
	}
	a.mu.Unlock()
	return nil
}

func (a *acks) run(closed <-chan *amqp.Error) {
	defer close(a.done)
	linger := time.NewTimer(ackLinger)
	linger.Stop()
	for {
		select {
		case <-a.wake:
			linger.Reset(ackLinger)
			select {
			case <-linger.C:
			case <-a.urgent:
				linger.Stop()
			case <-a.stop:
				linger.Stop()
			case <-closed:
				linger.Stop()
			}
			a.flush()
		case <-a.urgent:
			a.flush()
		case <-a.stop:
			a.mu.Lock()
			a.closed = true // an ack from now on fails: none is left unwritten
			a.mu.Unlock()
			a.flush()
			a.shut()
			return
		case _, open := <-closed:
			if open {
				continue // an error before it closes
			}
			a.shut()
			return
		}
	}
}

// shut fails what still waits and every later call.
func (a *acks) shut() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	for tag, written := range a.waiting {
		written <- errAcksClosed
		delete(a.waiting, tag)
	}
}

// close writes what is settled and stops, waiting at most until deadline
// (a write may block on a dying link): the session calls it before it
// closes the connection, and the consumer before it closes the channel,
// so that no ack waiting out its linger is lost.
func (a *acks) close(deadline time.Time) {
	a.once.Do(func() { close(a.stop) })
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-a.done:
	case <-t.C:
	}
}

// flush writes what is settled and waits: one multiple ack for the run
// from low, a lone ack for each tag past it.
func (a *acks) flush() {
	a.mu.Lock()
	var upTo uint64 // the run's last tag, if an ack in it waits
	for {
		pending, ok := a.settled[a.low]
		if !ok {
			break
		}
		if pending {
			upTo = a.low
		}
		delete(a.settled, a.low)
		a.low++
	}
	var lone []uint64
	for _, tag := range a.queued {
		if tag >= a.low && a.settled[tag] {
			lone = append(lone, tag)
			a.settled[tag] = false
		}
	}
	a.queued = a.queued[:0]
	taken := a.pending
	a.writing += taken
	a.pending = 0
	if len(a.settled) > maxTracked {
		a.alone, a.settled = true, nil
	}
	a.mu.Unlock()

	var err error
	if upTo != 0 {
		err = a.ch.Ack(upTo, true)
	}
	for _, tag := range lone {
		if e := a.ch.Ack(tag, false); e != nil {
			err = e
		}
	}

	a.mu.Lock()
	a.writing -= taken
	for tag, written := range a.waiting {
		if tag < a.low || !a.settled[tag] {
			written <- err
			delete(a.waiting, tag)
		}
	}
	a.mu.Unlock()
}
