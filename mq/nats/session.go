package nats

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/finalbus/final/mq"
)

// session is one TCP connection to the server and what was declared on it.
// It is replaced, never repaired: nats.go's own reconnect is off, because
// a nats.Conn that reconnects stays the same value, so nothing could tell
// a publish that went out before a reconnect from one after it (see
// PublishEncodedAfter), and the deliveries of the lost connection could
// not be told apart either (see delivery.Stale).
type session struct {
	nc        *natsgo.Conn
	js        jetstream.JetStream
	consumers []jetstream.Consumer // in the order of the topology's subs
	held      *holds

	lost     chan struct{} // closed once when the connection ends
	gone     chan struct{} // closed by supervise once the provider no longer offers it
	lostOnce sync.Once
	lostErr  error
	wg       sync.WaitGroup // the holds' extender
}

// closeTimeout bounds the flush and the deletes at close.
const closeTimeout = time.Second

// connect dials the server and declares the topology; purge is passed to
// declare.
// maxPendingPublishes is nats.go's bound on async publishes awaiting their
// ack, per connection.
const maxPendingPublishes = 1 << 16

func (p *Provider) connect(ctx context.Context, purge bool) (*session, error) {
	timeout := p.opts.dialTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	s := &session{lost: make(chan struct{}), gone: make(chan struct{})}
	s.held = newHolds(p.opts.ackWait, p.opts.maxHold, s)
	opts := append(append([]natsgo.Option(nil), p.opts.connectOptions...),
		natsgo.Name("final "+p.cfg.Service),
		natsgo.NoReconnect(),
		natsgo.ReconnectBufSize(-1), // no client-side buffer: a publish while disconnected fails at once
		natsgo.Timeout(timeout),
		natsgo.PingInterval(p.opts.pingInterval),
		natsgo.MaxPingsOutstanding(2),
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) { s.markLost(err) }),
		natsgo.ClosedHandler(func(*natsgo.Conn) { s.markLost(nil) }),
		natsgo.ErrorHandler(func(_ *natsgo.Conn, _ *natsgo.Subscription, err error) {
			p.cfg.Logger.Debug("mq/nats: asynchronous error", "err", err)
		}),
	)
	nc, err := natsgo.Connect(p.url, opts...)
	if err != nil {
		return nil, fmt.Errorf("mq/nats: connect: %w: %w", mq.ErrUnavailable, err)
	}
	s.nc = nc
	// nats.go stalls, then fails, async publishes beyond its pending limit
	// (4,000 by default): the bus bounds them itself (MaxUnconfirmed), so
	// the client's bound is set far above any sensible window.
	if s.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(maxPendingPublishes)); err != nil {
		nc.Close()
		return nil, fmt.Errorf("mq/nats: %w: %w", mq.ErrUnavailable, err)
	}
	dctx, cancel := context.WithTimeout(ctx, max(timeout, p.opts.dialTimeout))
	defer cancel()
	if s.consumers, err = p.topo.declare(dctx, s.js, purge); err != nil {
		nc.Close()
		if unreachable(err) {
			err = fmt.Errorf("%w: %w", mq.ErrUnavailable, err)
		}
		return nil, err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.held.run(s.lost)
	}()
	return s, nil
}

// unreachable reports whether a request failed for want of a server rather
// than because the server refused it.
func unreachable(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, natsgo.ErrTimeout) ||
		errors.Is(err, natsgo.ErrConnectionClosed) || errors.Is(err, natsgo.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, natsgo.ErrDisconnected)
}

func (s *session) markLost(err error) {
	s.lostOnce.Do(func() {
		if err == nil {
			err = natsgo.ErrConnectionClosed
		}
		s.lostErr = err
		close(s.lost)
	})
}

func (s *session) isLost() bool {
	select {
	case <-s.lost:
		return true
	default:
		return false
	}
}

func (s *session) lossReason() error {
	if s.isLost() {
		return s.lostErr
	}
	return nil
}

// close gives the deliveries it holds back to their consumers, so that
// they come again within giveBackDelay rather than after the ack wait, closes the
// connection and waits for the session's goroutine.
func (s *session) close() {
	if !s.isLost() {
		s.held.giveBackAll()
		_ = s.nc.FlushTimeout(closeTimeout)
	}
	s.nc.Close()
	s.markLost(nil)
	s.wg.Wait()
}
