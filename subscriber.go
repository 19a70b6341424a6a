package final

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/outbox"
)

// subscriber runs NumSubscriber workers over the service queue. A failing
// handler is retried RetryCount times with exponential backoff and jitter
// while the other workers go on; then the message is dead-lettered.
type subscriber struct {
	bus      *Bus // for Inbox subscriptions: the database, the inbox, WithTx
	provider mq.IProvider
	routes   map[string]*route
	opt      Options
	log      *slog.Logger

	lanes       *lanes          // per-key order for Ordered subscriptions
	consumeCtx  context.Context // cancelling it stops new deliveries
	stopConsume context.CancelFunc
	handlerCtx  context.Context // given to handlers; cancelled when Shutdown gives up
	stopHandler context.CancelFunc
	wg          sync.WaitGroup
	busy        atomic.Int64 // workers in run: what stop abandons at its bound
}

func newSubscriber(b *Bus, routes map[string]*route, o Options) *subscriber {
	s := &subscriber{bus: b, provider: b.provider, routes: routes, opt: o, log: o.Logger, lanes: newLanes()}
	s.consumeCtx, s.stopConsume = context.WithCancel(context.Background())
	s.handlerCtx, s.stopHandler = context.WithCancel(context.Background())
	return s
}

func (s *subscriber) start() error {
	deliveries, err := s.provider.Consume(s.consumeCtx)
	if err != nil {
		return err
	}
	// A slot per worker: the router decodes the next deliveries while the
	// workers run, rather than waking one worker per delivery. What waits
	// here when the bus stops is left unhandled (see stopped).
	work := make(chan task, s.opt.NumSubscriber)
	s.wg.Add(1)
	go func() { // the router: decode, and hold back a busy key's next message
		defer s.wg.Done()
		defer close(work)
		for d := range deliveries {
			if s.stopped() {
				continue
			}
			t := task{d: d, received: time.Now()}
			if t.msg, t.err = d.Message(); t.err == nil {
				t.rt = s.routes[t.msg.Topic]
				if t.rt != nil && t.rt.ordered && !s.lanes.enter(t) {
					continue // runs when its key's current message is done
				}
			}
			work <- t
		}
	}()
	for i := 0; i < s.opt.NumSubscriber; i++ {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for t := range work {
				if s.stopped() {
					continue
				}
				s.busy.Add(1)
				s.run(t)
				s.busy.Add(-1)
			}
		}()
	}
	return nil
}

// stopped reports that the bus stopped consuming. A delivery that has not
// reached a handler by then is left unsettled: the provider gives it back
// to the broker when it closes (RabbitMQ with the channel's other
// unacknowledged deliveries, in queue order; NATS with a nak), for the
// next instance. Stopping waits only for the handlers already running.
func (s *subscriber) stopped() bool { return s.consumeCtx.Err() != nil }

// run handles t and, for an Ordered subscription, the messages that queued
// behind it on its key.
func (s *subscriber) run(t task) {
	for {
		s.handle(t)
		if t.rt == nil || !t.rt.ordered {
			return
		}
		next, ok := s.lanes.leave(t.msg)
		if !ok {
			return
		}
		if s.stopped() {
			// Shutting down: the rest of the key stays unacknowledged, and
			// closing the provider returns it to its place in the queue, to
			// the next instance, in order. Handling it here could overtake
			// a message handle just gave back.
			for ok {
				next, ok = s.lanes.leave(next.msg)
			}
			return
		}
		t = next
	}
}

// stop cancels the consumer and lets in-flight handlers finish until
// deadline ends, then cancels their context and waits until grace ends for
// those that heed it. It returns how many handlers were still running
// then: they are abandoned, left to return on their own, and their
// deliveries go back to the queue when the provider closes.
func (s *subscriber) stop(deadline, grace context.Context) int {
	s.stopConsume()
	done := make(chan struct{})
	// Outlives stop only while an abandoned handler runs.
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-deadline.Done():
	}
	s.stopHandler()
	select {
	case <-done:
		return 0
	case <-grace.Done():
		return int(s.busy.Load())
	}
}

// stale reports whether the broker has taken d back (mq.Staler): its
// connection is gone, so it is redelivered, maybe to another instance, and
// this one must neither call a handler for it nor dead-letter it.
func stale(d mq.Delivery) bool {
	st, ok := d.(mq.Staler)
	return ok && st.Stale()
}

func (s *subscriber) handle(t task) {
	d, msg, rt := t.d, t.msg, t.rt
	if stale(d) {
		return
	}
	if t.err != nil {
		s.log.Warn("final: undecodable delivery dead-lettered", "err", t.err)
		s.deadLetter(d, "undecodable: "+t.err.Error())
		return
	}
	if rt == nil {
		s.log.Warn("final: delivery for a topic without handler dead-lettered", "topic", msg.Topic, "uuid", msg.UUID)
		s.deadLetter(d, ErrNoHandler.Error()+": "+msg.Topic)
		return
	}
	counted, over := s.redeliveries(d, msg)
	settled := false // acknowledged or dead-lettered here
	if counted {
		// A count kept in the database goes once the message is settled;
		// one given back (a shutdown) or taken back keeps it.
		defer func() {
			if settled {
				s.forgetRedeliveries(msg)
			}
		}()
	}
	if over > 0 {
		s.log.Warn("final: message dead-lettered: redelivered too often, it may crash its consumer",
			"topic", msg.Topic, "uuid", msg.UUID, "deliveries", over)
		settled = s.deadLetter(d, fmt.Sprintf("delivered %d times without an acknowledgement (Options.MaxRedeliveries = %d): "+
			"handling it may crash the consumer", over, s.opt.MaxRedeliveries))
		return
	}
	budget := holdBudget(s.bus.holdLimit)
	for attempt := 1; ; attempt++ {
		// Before every attempt, not only the first: a connection lost
		// during a retry's wait hands the message to another instance
		// (for an Ordered topic, with its key's successors behind it).
		if stale(d) {
			s.log.Debug("final: delivery taken back by the broker; not retried here", "topic", msg.Topic, "uuid", msg.UUID, "attempt", attempt)
			return
		}
		var err error
		if rt.inbox {
			var dup bool
			dup, err = s.callInTx(rt, msg, attempt)
			if dup {
				s.log.Debug("final: duplicate acknowledged without handling", "topic", msg.Topic, "uuid", msg.UUID)
			}
		} else {
			err = s.call(rt, msg, attempt, nil)
		}
		if err == nil {
			if err := d.Ack(); err != nil {
				s.log.Debug("final: ack failed; the broker will redeliver", "uuid", msg.UUID, "err", err)
				return
			}
			settled = true
			return
		}
		s.log.Debug("final: handler failed", "topic", msg.Topic, "uuid", msg.UUID, "attempt", attempt, "err", err)
		if attempt > s.opt.RetryCount || errors.Is(err, ErrPermanent) {
			s.log.Warn("final: message dead-lettered after retries", "topic", msg.Topic, "uuid", msg.UUID, "attempts", attempt, "err", err)
			settled = s.deadLetter(d, fmt.Sprintf("handler failed %d times: %v", attempt, err))
			return
		}
		wait := jitter(s.opt.retryWait(attempt - 1))
		if budget > 0 && time.Since(t.received)+wait > budget {
			// Waiting would hold the delivery past the broker's limit,
			// which would take it back and close the channel that every
			// consumer of this instance shares.
			s.log.Warn("final: message dead-lettered: retrying would hold it past the broker's delivery timeout",
				"topic", msg.Topic, "uuid", msg.UUID, "attempts", attempt, "held", time.Since(t.received), "err", err)
			settled = s.deadLetter(d, fmt.Sprintf("handler failed %d times and retrying would hold the delivery past the broker's timeout (%s): %v",
				attempt, s.bus.holdLimit, err))
			return
		}
		if !s.wait(d, wait) {
			// Shutting down: give the message back instead of waiting.
			_ = d.Requeue()
			return
		}
	}
}

// staleCheck is how often a retry's wait looks whether the broker took the
// delivery back, so that it ends then instead of holding the worker (and,
// for an Ordered topic, the key's redelivered messages behind it).
const staleCheck = 250 * time.Millisecond

// wait waits d's retry wait out; it returns early, true, once d is stale,
// and false when the bus shuts down.
func (s *subscriber) wait(d mq.Delivery, wait time.Duration) bool {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	tick := time.NewTicker(staleCheck)
	defer tick.Stop()
	for {
		select {
		case <-timer.C:
			return true
		case <-tick.C:
			if stale(d) {
				return true // the next attempt's check drops it
			}
		case <-s.consumeCtx.Done():
			return false
		}
	}
}

// redeliveries checks a redelivered message against MaxRedeliveries. over
// is its number of deliveries, this one included, when that exceeds the
// bound, else 0. counted reports that the count was kept in the database
// (outbox.RedeliveryCounter), to be forgotten once the message is settled.
// A database error only skips the check.
func (s *subscriber) redeliveries(d mq.Delivery, msg *message.Message) (counted bool, over int) {
	if s.opt.MaxRedeliveries == 0 || !d.Redelivered() {
		return false, 0
	}
	before, counted := s.deliveriesBefore(msg)
	if before > s.opt.MaxRedeliveries {
		return counted, before + 1
	}
	return counted, 0
}

// deliveriesBefore is how many times a redelivered message was delivered
// before and not settled, as the database counts (counted).
func (s *subscriber) deliveriesBefore(msg *message.Message) (n int, counted bool) {
	rc, ok := s.bus.store.(outbox.RedeliveryCounter)
	if !ok {
		return 0, false
	}
	ctx, cancel := context.WithTimeout(s.handlerCtx, s.opt.PublishTimeout)
	defer cancel()
	// The original delivery was not counted, so the count of
	// redeliveries, this one included, is the deliveries before it.
	n, err := rc.CountRedelivery(ctx, msg.Topic, msg.UUID)
	if err != nil {
		s.log.Warn("final: redelivery not counted; MaxRedeliveries not checked", "topic", msg.Topic, "uuid", msg.UUID, "err", err)
		return 0, false
	}
	return n, true
}

// forgetRedeliveries drops the database's count of a settled message. An
// ack lost with its connection may still bring the message back: it is
// counted from one again, which only delays the bound.
func (s *subscriber) forgetRedeliveries(msg *message.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opt.PublishTimeout)
	defer cancel()
	if err := s.bus.store.(outbox.RedeliveryCounter).ForgetRedeliveries(ctx, msg.Topic, msg.UUID); err != nil {
		s.log.Debug("final: redelivery count not removed", "uuid", msg.UUID, "err", err)
	}
}

// call runs the chain once, on txBus for an Inbox subscription; a panic
// becomes an error wrapping ErrHandlerPanic.
func (s *subscriber) call(rt *route, msg *message.Message, attempt int, txBus *TxBus) error {
	return runChain(s.handlerCtx, msg, attempt, txBus, rt.chain, func(r any, stack []byte) {
		s.log.Error("final: handler panicked", "topic", msg.Topic, "uuid", msg.UUID, "panic", r, "stack", string(stack))
	})
}

// callInTx runs an Inbox subscription's chain once inside a transaction
// that first records the message in the inbox. It reports dup, without
// calling the chain, when the message was handled before.
func (s *subscriber) callInTx(rt *route, msg *message.Message, attempt int) (dup bool, err error) {
	ctx := s.handlerCtx
	tx, err := s.bus.beginner.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("final: inbox: %w", err)
	}
	txBus := s.bus.WithDriverTx(ctx, tx)
	defer func() {
		if dup || err != nil {
			_ = txBus.RollBack()
		}
	}()
	if dup, err = s.bus.inbox.Record(ctx, tx, msg.UUID, msg.Topic); dup || err != nil {
		return dup, err
	}
	if err = s.call(rt, msg, attempt, txBus); err != nil {
		return false, err
	}
	if err = txBus.Commit(); err != nil {
		return false, fmt.Errorf("final: inbox commit: %w", err)
	}
	return false, nil
}

// deadLetter moves d to the dead-letter queue; if that fails the delivery
// goes back to the queue, to be tried again. It reports whether d left
// the queue.
func (s *subscriber) deadLetter(d mq.Delivery, reason string) (settled bool) {
	if stale(d) {
		// The broker has it back and delivers it again; a dead-letter
		// publish now would leave a copy in the dead-letter queue of a
		// message that is still being handled.
		s.log.Debug("final: delivery taken back by the broker; not dead-lettered here", "reason", reason)
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opt.PublishTimeout)
	defer cancel()
	if err := d.DeadLetter(ctx, reason); err != nil {
		s.log.Warn("final: dead-letter failed; message requeued", "err", err)
		_ = d.Requeue()
		return false
	}
	return true
}

// jitter returns a duration uniformly in [d/2, d).
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(half)
}
