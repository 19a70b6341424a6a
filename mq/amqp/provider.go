// Package amqp is the RabbitMQ provider of final, built on amqp091-go.
//
// Topology: one durable direct exchange (default "final") routes by topic;
// each service has one durable queue "final.<service>" bound to the topics it
// subscribes to, so instances of a service compete and different services
// each get a copy; "final.<service>.dlq" holds its dead letters. Publishes are
// persistent (unless the policy says otherwise), mandatory, and confirmed
// through amqp091-go's deferred confirmations.
//
// The publishing connection's writes are coalesced: a publish copies its
// frames, and a goroutine of the connection gives the socket what gathered
// in one system call (internal/coalesce), where amqp091-go makes one per
// publish. A publishing process spent about half as much CPU per publish
// so (docs/performance.md). The consuming connection writes its acks as
// amqp091-go does.
package amqp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/finalbus/final/mq"
)

// Provider is an mq.IProvider for RabbitMQ. Create it with NewProvider.
type Provider struct {
	url  string
	opts options

	cfg  mq.Config
	topo topology

	mu      sync.Mutex
	state   providerState
	current *session      // nil while disconnected
	ready   chan struct{} // closed when current is set; replaced when it is lost
	done    chan struct{} // closed by Close
	wg      sync.WaitGroup
}

type providerState int

const (
	stateNew providerState = iota
	stateRunning
	stateClosed
)

var (
	_ mq.IProvider        = (*Provider)(nil)
	_ mq.EncodedPublisher = (*Provider)(nil)
	_ mq.ReadyNotifier    = (*Provider)(nil)
	_ mq.DeadLetterQueue  = (*Provider)(nil)
	_ mq.HoldLimiter      = (*Provider)(nil)
)

// NewProvider returns a provider for the broker at url
// (amqp://user:pass@host:port/vhost). It does not connect until Init.
func NewProvider(url string, opts ...Option) *Provider {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	return &Provider{
		url:   url,
		opts:  o,
		ready: make(chan struct{}),
		done:  make(chan struct{}),
	}
}

// Init connects, declares the topology and starts the reconnect loop.
func (p *Provider) Init(ctx context.Context, cfg mq.Config) error {
	if cfg.Logger == nil {
		return errors.New("amqp: Config.Logger is nil")
	}
	p.mu.Lock()
	if p.state != stateNew {
		p.mu.Unlock()
		return fmt.Errorf("amqp: Init called twice or after Close: %w", mq.ErrClosed)
	}
	p.cfg = cfg
	p.topo = newTopology(p.opts.exchange, cfg, p.opts.quorum)
	p.mu.Unlock()

	s, err := p.connect(ctx)
	if err != nil {
		return err
	}
	if cfg.Purge && len(cfg.Topics) > 0 {
		if err := s.purge(p.topo); err != nil {
			s.close()
			return err
		}
	}
	p.mu.Lock()
	p.state = stateRunning
	p.setSessionLocked(s)
	p.mu.Unlock()

	p.wg.Add(1)
	go p.supervise(s)
	return nil
}

// Close stops reconnecting, closes the connection and waits for every
// goroutine the provider started.
func (p *Provider) Close() error {
	p.mu.Lock()
	if p.state == stateClosed {
		p.mu.Unlock()
		return nil
	}
	p.state = stateClosed
	close(p.done)
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

// HoldLimit implements mq.HoldLimiter: the broker's consumer timeout, as
// WithConsumerTimeout set it.
func (p *Provider) HoldLimit() time.Duration { return max(p.opts.consumerTimeout, 0) }

// Ready implements mq.ReadyNotifier.
func (p *Provider) Ready() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ready
}

// session returns the live session, or an error saying why there is none.
func (p *Provider) session() (*session, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.state == stateClosed:
		return nil, mq.ErrClosed
	case p.current == nil:
		return nil, fmt.Errorf("amqp: not connected: %w", mq.ErrUnavailable)
	}
	return p.current, nil
}

// waitSession blocks until a session is live, ctx ends or the provider closes.
func (p *Provider) waitSession(ctx context.Context) *session {
	for {
		p.mu.Lock()
		s, ready, closed := p.current, p.ready, p.state == stateClosed
		p.mu.Unlock()
		if closed {
			return nil
		}
		if s != nil {
			return s
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil
		case <-p.done:
			return nil
		}
	}
}

func (p *Provider) setSessionLocked(s *session) {
	p.current = s
	if s != nil {
		close(p.ready)
	} else {
		p.ready = make(chan struct{})
	}
}

// supervise owns the connection: when the session is lost it reconnects with
// backoff until Close.
func (p *Provider) supervise(s *session) {
	defer p.wg.Done()
	for {
		select {
		case <-p.done:
			s.close()
			return
		case <-s.lost:
		}
		s.close()
		p.mu.Lock()
		if p.current == s {
			p.setSessionLocked(nil)
		}
		p.mu.Unlock()
		p.cfg.Logger.Warn("amqp: connection lost, reconnecting", "err", s.lossReason())

		for attempt := 0; ; attempt++ {
			t := time.NewTimer(mq.Backoff(p.opts.reconnectMin, p.opts.reconnectMax, attempt))
			select {
			case <-p.done:
				t.Stop()
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), p.opts.dialTimeout)
			next, err := p.connect(ctx)
			cancel()
			if err != nil {
				p.cfg.Logger.Debug("amqp: reconnect failed", "attempt", attempt+1, "err", err)
				continue
			}
			s = next
			break
		}
		p.mu.Lock()
		if p.state == stateClosed {
			p.mu.Unlock()
			s.close()
			return
		}
		p.setSessionLocked(s)
		p.mu.Unlock()
		p.cfg.Logger.Info("amqp: reconnected")
	}
}
