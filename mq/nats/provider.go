package nats

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/finalbus/final/mq"
)

// Provider is an mq.IProvider for NATS JetStream. Create it with
// NewProvider.
type Provider struct {
	url      string
	opts     options
	instance string // names this instance's broadcast consumers

	cfg   mq.Config
	names names
	topo  topology

	mu      sync.Mutex
	state   providerState
	current *session      // nil while disconnected
	ready   chan struct{} // closed when current is set; replaced when it is lost
	done    chan struct{} // closed by Close
	wg      sync.WaitGroup
	pulling sync.WaitGroup // the Consume goroutines, stopped before the last session closes
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
	_ mq.OrderedPublisher = (*Provider)(nil)
	_ mq.ReadyNotifier    = (*Provider)(nil)
	_ mq.DeadLetterQueue  = (*Provider)(nil)
	_ mq.HoldLimiter      = (*Provider)(nil)
)

// NewProvider returns a provider for the server at url (nats://host:port,
// or several, comma-separated). It does not connect until Init, which also
// rejects invalid options.
func NewProvider(url string, opts ...Option) *Provider {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Provider{
		url:      url,
		opts:     o,
		instance: hex.EncodeToString(b[:]),
		names:    names{prefix: o.prefix},
		ready:    make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// Init validates the options, connects, declares the streams and consumers
// of cfg and starts keeping the connection alive.
func (p *Provider) Init(ctx context.Context, cfg mq.Config) error {
	if cfg.Logger == nil {
		return errors.New("mq/nats: Config.Logger is nil")
	}
	if err := p.opts.validate(); err != nil {
		return err
	}
	p.mu.Lock()
	if p.state != stateNew {
		p.mu.Unlock()
		return fmt.Errorf("mq/nats: Init called twice or after Close: %w", mq.ErrClosed)
	}
	p.cfg = cfg
	p.topo = newTopology(p.opts, cfg, p.instance)
	p.mu.Unlock()

	s, err := p.connect(ctx, cfg.Purge)
	if err != nil {
		return err
	}
	p.mu.Lock()
	if p.state == stateClosed { // Close ran meanwhile
		p.mu.Unlock()
		s.close()
		return fmt.Errorf("mq/nats: closed during Init: %w", mq.ErrClosed)
	}
	p.state = stateRunning
	p.setSessionLocked(s)
	p.mu.Unlock()

	p.wg.Add(1)
	go p.supervise(s)
	return nil
}

// Close stops consuming and reconnecting, gives the deliveries not
// acknowledged back to their consumers, deletes this instance's broadcast
// consumers, closes the connection and waits for every goroutine the
// provider started. It is idempotent.
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
	// supervise waits for the Consume goroutines too, except when Close
	// finds it between two sessions: waited for here either way.
	p.pulling.Wait()
	return nil
}

// HoldLimit implements mq.HoldLimiter: WithMaxHold, how long the provider
// keeps a delivery from being taken back.
func (p *Provider) HoldLimit() time.Duration { return p.opts.maxHold }

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
	case p.state == stateNew:
		return nil, fmt.Errorf("mq/nats: not initialised: %w", mq.ErrClosed)
	case p.current == nil || p.current.isLost():
		return nil, fmt.Errorf("mq/nats: not connected: %w", mq.ErrUnavailable)
	}
	return p.current, nil
}

// waitSession blocks until a session is live, ctx ends or the provider
// closes.
func (p *Provider) waitSession(ctx context.Context) *session {
	for {
		p.mu.Lock()
		s, ready, closed := p.current, p.ready, p.state == stateClosed
		p.mu.Unlock()
		if closed {
			return nil
		}
		if s != nil && !s.isLost() {
			return s
		}
		if s != nil { // lost, and about to be replaced by supervise
			ready = s.gone
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

// supervise owns the sessions: when one is lost it connects again with
// backoff until Close, which it carries out.
func (p *Provider) supervise(s *session) {
	defer p.wg.Done()
	for {
		select {
		case <-p.done:
			p.pulling.Wait() // nothing is handed out any more
			if !s.isLost() {
				ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
				p.topo.deleteBroadcast(ctx, s.js)
				cancel()
			}
			s.close()
			return
		case <-s.lost:
		}
		p.mu.Lock()
		if p.current == s { // first, so that waitSession waits for the next
			p.setSessionLocked(nil)
		}
		p.mu.Unlock()
		close(s.gone)
		s.close()
		p.cfg.Logger.Warn("mq/nats: connection lost, reconnecting", "err", s.lossReason())

		for attempt := 0; ; attempt++ {
			t := time.NewTimer(mq.Backoff(p.opts.reconnectMin, p.opts.reconnectMax, attempt))
			select {
			case <-p.done:
				t.Stop()
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), p.opts.dialTimeout)
			next, err := p.connect(ctx, false)
			cancel()
			if err != nil {
				p.cfg.Logger.Debug("mq/nats: reconnect failed", "attempt", attempt+1, "err", err)
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
		p.cfg.Logger.Info("mq/nats: reconnected")
	}
}
