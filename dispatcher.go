package final

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// outgoing is an outbox row on its way to the broker.
type outgoing struct {
	id    int64            // outbox row id
	owner string           // the relay's claim owner; "" on the fast path
	msg   *message.Message // routing: topic, UUID, policy
	body  []byte           // the bytes stored in the row: the wire body
}

// flight is a publish waiting for its confirm.
type flight struct {
	outgoing
	conf mq.Confirmation
	sent time.Time
	err  error
}

// dispatcher hands outbox rows to the broker: committed rows right after
// commit (the fast path) and rows claimed by the relay. One goroutine
// publishes, pipelining; another waits for the confirms in publish order
// and passes the verdicts to the acker. amqp091-go tracks which confirm
// belongs to which publish.
type dispatcher struct {
	provider mq.IProvider
	encoded  mq.EncodedPublisher // the provider, if it can publish stored bytes
	acker    *acker
	log      *slog.Logger
	timeout  time.Duration

	queue    chan outgoing
	inflight chan flight
	ctx      context.Context // cancelled when Shutdown stops waiting

	// brokerDown is set when a publish found the broker unreachable and
	// cleared by the next confirm; the relay then slows to its interval.
	brokerDown atomic.Bool

	wg sync.WaitGroup
}

func newDispatcher(ctx context.Context, p mq.IProvider, a *acker, o Options) *dispatcher {
	encoded, _ := p.(mq.EncodedPublisher)
	return &dispatcher{
		provider: p,
		encoded:  encoded,
		acker:    a,
		log:      o.Logger,
		timeout:  o.PublishTimeout,
		queue:    make(chan outgoing, o.DispatchQueueSize),
		inflight: make(chan flight, 4096),
		ctx:      ctx,
	}
}

func (d *dispatcher) start() {
	d.wg.Add(2)
	go d.publishLoop()
	go d.confirmLoop()
}

// offer queues o without blocking; false means the queue is full and the
// row is left to the relay.
func (d *dispatcher) offer(o outgoing) bool {
	select {
	case d.queue <- o:
		return true
	default:
		return false
	}
}

// submit queues o, waiting for room; the relay uses it for backpressure.
func (d *dispatcher) submit(ctx context.Context, o outgoing) error {
	select {
	case d.queue <- o:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close stops intake; the loops finish what is queued. The caller
// guarantees no offer or submit runs concurrently or afterwards.
func (d *dispatcher) close() { close(d.queue) }

func (d *dispatcher) wait() { d.wg.Wait() }

func (d *dispatcher) publishLoop() {
	defer d.wg.Done()
	defer close(d.inflight)
	for o := range d.queue {
		conf, err := d.send(d.ctx, o)
		d.inflight <- flight{outgoing: o, conf: conf, sent: time.Now(), err: err}
	}
}

// send publishes o, as its stored bytes when the provider can.
func (d *dispatcher) send(ctx context.Context, o outgoing) (mq.Confirmation, error) {
	if d.encoded != nil {
		return d.encoded.PublishEncoded(ctx, o.msg, o.body)
	}
	return d.provider.Publish(ctx, o.msg)
}

func (d *dispatcher) confirmLoop() {
	defer d.wg.Done()
	for f := range d.inflight {
		err := f.err
		if err == nil {
			ctx, cancel := context.WithDeadline(d.ctx, f.sent.Add(d.timeout))
			err = f.conf.Wait(ctx)
			cancel()
			if errors.Is(err, context.DeadlineExceeded) {
				err = errors.New("final: publish not confirmed within PublishTimeout")
			}
		}
		if err == nil {
			d.brokerDown.Store(false)
			d.acker.done(f.id)
			continue
		}
		if errors.Is(err, mq.ErrUnavailable) {
			d.brokerDown.Store(true)
		}
		d.log.Debug("final: publish failed, will retry", "id", f.id, "uuid", f.msg.UUID, "err", err)
		d.acker.fail(failure{id: f.id, owner: f.owner, cause: err.Error()})
	}
}
