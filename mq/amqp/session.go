package amqp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/finalbus/final/mq"
)

// ErrBlocked is returned, wrapped with mq.ErrUnavailable and the broker's
// reason, by a publish while RabbitMQ blocks the publishing connection
// during a resource alarm (connection.blocked). The bus keeps the message
// in the outbox and sends it once the alarm clears.
var ErrBlocked = errors.New("amqp: broker blocked the connection")

// session is the live pair of connections: one publishes, one consumes.
// They are separate because RabbitMQ's flow control throttles reading from
// a connection that publishes fast, which would also hold back the acks of
// a consumer sharing it, and so starve the consumer. A session is replaced,
// never repaired: when anything in it fails it is lost as a whole.
type session struct {
	conn     *amqp.Connection // publishing
	consConn *amqp.Connection // consuming; nil for a service without topics
	pub      *amqp.Channel    // confirm mode; carries publishes and dead letters
	private  string           // this connection's broadcast queue, if any

	returns *returnTracker
	blocked atomic.Pointer[string] // why the broker blocks conn; nil while it does not

	acks atomic.Pointer[acks] // the consuming channel's, once it consumes

	lost     chan struct{} // closed once when the connection or a channel fails
	lostOnce sync.Once
	lostErr  error
	wg       sync.WaitGroup // the watcher and the return drainer
}

// connect dials, opens the publishing channel in confirm mode and declares
// the topology.
func (p *Provider) connect(ctx context.Context) (*session, error) {
	timeout := p.opts.dialTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	dial := func(role string) (*amqp.Connection, error) { return p.dial(timeout, role) } // tls.go, dial.go
	conn, err := dial("publish")
	if err != nil {
		return nil, err
	}
	s := &session{conn: conn, lost: make(chan struct{})}
	fail := func(err error) (*session, error) {
		_ = conn.Close()
		if s.consConn != nil {
			_ = s.consConn.Close()
		}
		return nil, fmt.Errorf("%w: %w", mq.ErrUnavailable, err)
	}
	if p.topo.consumes() {
		if s.consConn, err = dial("consume"); err != nil {
			return fail(err)
		}
	}
	if len(p.topo.fanout) > 0 {
		// Declared now, so that an instance receives every broadcast
		// message published once Init has returned.
		ch, err := s.consConn.Channel()
		if err != nil {
			return fail(err)
		}
		if s.private, err = p.topo.declarePrivate(ch); err != nil {
			return fail(err)
		}
		_ = ch.Close()
	}
	setup, err := conn.Channel()
	if err != nil {
		return fail(err)
	}
	if err := p.topo.declare(setup); err != nil {
		return fail(err)
	}
	_ = setup.Close()

	if s.pub, err = conn.Channel(); err != nil {
		return fail(err)
	}
	if err := s.pub.Confirm(false); err != nil {
		return fail(err)
	}
	s.returns = newReturnTracker(s.pub.NotifyReturn(make(chan amqp.Return, 1024)))

	connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))
	pubClosed := s.pub.NotifyClose(make(chan *amqp.Error, 1))
	var consClosed chan *amqp.Error // nil: never ready
	if s.consConn != nil {
		consClosed = s.consConn.NotifyClose(make(chan *amqp.Error, 1))
	}
	blocks := conn.NotifyBlocked(make(chan amqp.Blocking, 1))
	s.wg.Add(3)
	go func() { // until conn closes, which closes blocks
		defer s.wg.Done()
		s.watchBlocked(blocks, p.cfg.Logger)
	}()
	go func() { // watcher: turns any close into lost
		defer s.wg.Done()
		select {
		case err := <-connClosed:
			s.markLost(err)
		case err := <-pubClosed:
			s.markLost(err)
		case err := <-consClosed:
			s.markLost(err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.returns.run(s.lost)
	}()
	return s, nil
}

// watchBlocked follows RabbitMQ's connection.blocked and
// connection.unblocked. The broker blocks a publishing connection during a
// resource alarm (memory or disk) and stops reading from it: a publish
// would then wait, unconfirmed, until the alarm clears. While it lasts,
// publish refuses at once instead. RabbitMQ blocks a connection only once
// it publishes, so the publishes sent before the notice still wait, for
// their confirm timeout.
func (s *session) watchBlocked(blocks <-chan amqp.Blocking, log *slog.Logger) {
	for b := range blocks {
		if b.Active {
			reason := b.Reason
			s.blocked.Store(&reason)
			log.Warn("amqp: broker blocked the publishing connection; publishes fail until it unblocks", "reason", reason)
		} else {
			s.blocked.Store(nil)
			log.Info("amqp: broker unblocked the publishing connection")
		}
	}
}

// blockedErr reports, while the broker blocks the publishing connection,
// why, as an error wrapping ErrBlocked and mq.ErrUnavailable.
func (s *session) blockedErr() error {
	if reason := s.blocked.Load(); reason != nil {
		return fmt.Errorf("%w: %s: %w", ErrBlocked, *reason, mq.ErrUnavailable)
	}
	return nil
}

func (s *session) markLost(err *amqp.Error) {
	s.lostOnce.Do(func() {
		if err != nil {
			s.lostErr = err
		} else {
			s.lostErr = amqp.ErrClosed
		}
		close(s.lost)
	})
}

func (s *session) lossReason() error {
	select {
	case <-s.lost:
		return s.lostErr
	default:
		return nil
	}
}

// closeTimeout bounds the close handshake. A broker that does not answer
// in time (it blocks the connection during a resource alarm, or the link is
// dead) is dropped: what it had not confirmed is sent again anyway, and
// what it had not acknowledged goes back to its queue.
const closeTimeout = time.Second

// close closes the connections and waits for the session's goroutines.
func (s *session) close() {
	deadline := time.Now().Add(closeTimeout)
	if a := s.acks.Load(); a != nil {
		a.close(deadline) // the acks still lingering go out first
	}
	_ = s.conn.CloseDeadline(deadline)
	if s.consConn != nil {
		_ = s.consConn.CloseDeadline(deadline)
	}
	s.markLost(nil)
	s.wg.Wait()
}

// redeclare declares the topology again on a fresh channel.
func (s *session) redeclare(t topology) error {
	ch, err := s.conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	return t.declare(ch)
}

// purge empties the service queue.
func (s *session) purge(t topology) error {
	ch, err := s.conn.Channel()
	if err != nil {
		return fmt.Errorf("amqp: purge: %w", err)
	}
	defer ch.Close()
	if _, err := ch.QueuePurge(t.queue, false); err != nil {
		return fmt.Errorf("amqp: purge %q: %w", t.queue, err)
	}
	return nil
}
