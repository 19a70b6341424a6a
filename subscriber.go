package final

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"time"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// subscriber runs NumSubscriber workers over the service queue. A failing
// handler is retried RetryCount times with exponential backoff and jitter
// while the other workers go on; then the message is dead-lettered.
type subscriber struct {
	provider mq.IProvider
	routes   map[string]*route
	opt      Options
	log      *slog.Logger

	consumeCtx  context.Context // cancelling it stops new deliveries
	stopConsume context.CancelFunc
	handlerCtx  context.Context // given to handlers; cancelled when Shutdown gives up
	stopHandler context.CancelFunc
	wg          sync.WaitGroup
}

func newSubscriber(p mq.IProvider, routes map[string]*route, o Options) *subscriber {
	s := &subscriber{provider: p, routes: routes, opt: o, log: o.Logger}
	s.consumeCtx, s.stopConsume = context.WithCancel(context.Background())
	s.handlerCtx, s.stopHandler = context.WithCancel(context.Background())
	return s
}

func (s *subscriber) start() error {
	deliveries, err := s.provider.Consume(s.consumeCtx)
	if err != nil {
		return err
	}
	for i := 0; i < s.opt.NumSubscriber; i++ {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for d := range deliveries {
				s.handle(d)
			}
		}()
	}
	return nil
}

// stop cancels the consumer, lets in-flight handlers finish for up to
// timeout, then cancels their context and waits up to timeout again.
func (s *subscriber) stop(timeout time.Duration) error {
	s.stopConsume()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		s.stopHandler()
		return nil
	case <-t.C:
	}
	s.stopHandler()
	t.Reset(timeout)
	select {
	case <-done:
		return nil
	case <-t.C:
		return errors.New("final: handlers still running after ShutdownTimeout; they ignore Context.Context()")
	}
}

func (s *subscriber) handle(d mq.Delivery) {
	msg, err := d.Message()
	if err != nil {
		s.log.Warn("final: undecodable delivery dead-lettered", "err", err)
		s.deadLetter(d, "undecodable: "+err.Error())
		return
	}
	rt := s.routes[msg.Topic]
	if rt == nil {
		s.log.Warn("final: delivery for a topic without handler dead-lettered", "topic", msg.Topic, "uuid", msg.UUID)
		s.deadLetter(d, ErrNoHandler.Error()+": "+msg.Topic)
		return
	}
	for attempt := 1; ; attempt++ {
		err := s.call(rt, msg, attempt)
		if err == nil {
			if err := d.Ack(); err != nil {
				s.log.Debug("final: ack failed; the broker will redeliver", "uuid", msg.UUID, "err", err)
			}
			return
		}
		s.log.Debug("final: handler failed", "topic", msg.Topic, "uuid", msg.UUID, "attempt", attempt, "err", err)
		if attempt > s.opt.RetryCount {
			s.log.Warn("final: message dead-lettered after retries", "topic", msg.Topic, "uuid", msg.UUID, "attempts", attempt, "err", err)
			s.deadLetter(d, fmt.Sprintf("handler failed %d times: %v", attempt, err))
			return
		}
		t := time.NewTimer(jitter(mq.Backoff(s.opt.RetryInterval, time.Hour, attempt-1)))
		select {
		case <-t.C:
		case <-s.consumeCtx.Done():
			// Shutting down: give the message back instead of waiting.
			t.Stop()
			_ = d.Requeue()
			return
		}
	}
}

// call runs the chain once; a panic becomes an error wrapping ErrHandlerPanic.
func (s *subscriber) call(rt *route, msg *message.Message, attempt int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("final: handler panicked", "topic", msg.Topic, "uuid", msg.UUID, "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("%w: %v", ErrHandlerPanic, r)
		}
	}()
	return newContext(s.handlerCtx, msg, rt.chain, attempt).Next()
}

// deadLetter moves d to the dead-letter queue; if that fails the delivery
// goes back to the queue, to be tried again.
func (s *subscriber) deadLetter(d mq.Delivery, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opt.PublishTimeout)
	defer cancel()
	if err := d.DeadLetter(ctx, reason); err != nil {
		s.log.Warn("final: dead-letter failed; message requeued", "err", err)
		_ = d.Requeue()
	}
}

// jitter returns a duration uniformly in [d/2, d).
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(half)
}
