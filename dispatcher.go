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
	key   int64            // outbox.OrderKey; 0: not ordered
	owner string           // the relay's claim owner; "" on the fast path
	msg   *message.Message // routing: topic, UUID, policy
	body  []byte           // the bytes stored in the row: the wire body
	// sendBy is the last moment a publish of the row may start: for a
	// claimed row, its lease's end less PublishTimeout, so that the publish
	// is settled before another relay may claim the row; for a committed
	// one, the end of its fast-path window (OutboxScanAgoTime after its
	// insert), when the relays may claim it. Both are measured from before
	// the statement that set them in the table, so they fall early, never
	// late. A row past it is left in the table, where it is or soon becomes
	// available to the relays. Zero: no limit.
	sendBy time.Time
}

// late reports whether o's window has closed (see outgoing.sendBy).
func (o outgoing) late(now time.Time) bool { return !o.sendBy.IsZero() && now.After(o.sendBy) }

// flight is a publish waiting for its confirm.
type flight struct {
	outgoing
	conf mq.Confirmation
	sent time.Time
	err  error // the publish failed; conf is nil
	slot bool  // holds a slot of the window
}

// dispatcher hands outbox rows to the broker: committed rows right after
// commit (the fast path) and rows claimed by the relay. One goroutine
// publishes, pipelining up to MaxUnconfirmed publishes (the window);
// another waits for the confirms in publish order and passes the verdicts
// to the acker. amqp091-go tracks which confirm belongs to which publish.
// Messages with a key go through order, which keeps each key's messages in
// outbox order.
type dispatcher struct {
	provider mq.IProvider
	encoded  mq.EncodedPublisher // the provider, if it can publish stored bytes
	ordered  mq.OrderedPublisher // the provider, if it can publish after a given publish
	order    *keyOrder
	acker    *acker
	log      *slog.Logger
	timeout  time.Duration

	queue    chan outgoing
	inflight chan flight
	window   chan struct{}   // a slot per publish awaiting its verdict
	ctx      context.Context // cancelled when Shutdown stops waiting

	// brokerDown is set when a publish found the broker unreachable and
	// cleared by the next confirm; the relay then slows to its interval.
	brokerDown atomic.Bool

	wg sync.WaitGroup
}

func newDispatcher(ctx context.Context, p mq.IProvider, a *acker, o Options) *dispatcher {
	encoded, _ := p.(mq.EncodedPublisher)
	ordered, _ := p.(mq.OrderedPublisher)
	return &dispatcher{
		provider: p,
		encoded:  encoded,
		ordered:  ordered,
		order:    newKeyOrder(o.DispatchQueueSize),
		acker:    a,
		log:      o.Logger,
		timeout:  o.PublishTimeout,
		queue:    make(chan outgoing, o.DispatchQueueSize),
		inflight: make(chan flight, o.MaxUnconfirmed),
		window:   make(chan struct{}, o.MaxUnconfirmed),
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
	for {
		var o outgoing
		select {
		case key := <-d.order.freed:
			d.publishParked(key)
			continue
		case next, ok := <-d.queue:
			if !ok {
				return
			}
			o = next
		}
		if o.key != 0 {
			d.publishKeyed(o)
			continue
		}
		d.window <- struct{}{}
		if o.late(time.Now()) {
			// The row waited past its window: another relay may be
			// sending it now. It stays in the table for the relays.
			<-d.window
			d.log.Debug("final: row left to the relay; it waited too long to be sent", "id", o.id)
			continue
		}
		conf, err := d.send(d.ctx, o)
		d.inflight <- flight{outgoing: o, conf: conf, sent: time.Now(), err: err, slot: true}
	}
}

// publishParked publishes the parked rows of a key that became free
// without a row of its own arriving to take them along.
func (d *dispatcher) publishParked(key int64) {
	if rows := d.order.release(key); len(rows) > 0 {
		d.publishRows(rows)
	}
}

// publishKeyed publishes o, and the parked rows of its key that may follow
// it, each behind the previous publish of the key.
func (d *dispatcher) publishKeyed(o outgoing) {
	ready, refused := d.order.admit(o)
	if refused {
		d.inflight <- flight{outgoing: o, sent: time.Now(), err: errHeldBack}
		return
	}
	d.publishRows(ready)
}

// publishRows publishes rows of one key in order, each behind the previous
// publish of the key, and holds back the rest at the first that may not go.
func (d *dispatcher) publishRows(ready []outgoing) {
	for i, r := range ready {
		// The verdicts on the key's earlier rows keep coming in, so the
		// key is asked again right before each publish, once the window
		// has a slot for it.
		d.window <- struct{}{}
		prev, ok := d.order.next(r)
		if !ok || r.owner != "" && r.late(time.Now()) {
			// A claimed row past its window goes back to the table with
			// the rest of its key. Committed rows of a key keep their
			// place in order whatever their age: only claimed ones are
			// checked here.
			<-d.window
			d.holdBack(ready[i:])
			return
		}
		conf, err := d.sendAfter(d.ctx, prev, r)
		if d.order.sent(r, conf, err) {
			d.inflight <- flight{outgoing: r, conf: conf, sent: time.Now(), slot: true}
			continue
		}
		if errors.Is(err, mq.ErrOutOfOrder) { // r itself waits too
			<-d.window // nothing was sent
			d.holdBack(ready[i:])
		} else {
			d.inflight <- flight{outgoing: r, sent: time.Now(), err: err, slot: true}
			d.holdBack(ready[i+1:])
		}
		return
	}
}

// holdBack returns rows that may not be published now: fast-path rows wait
// parked, relay rows are given back to the table (errHeldBack: released,
// not failed).
func (d *dispatcher) holdBack(rows []outgoing) {
	var parked []outgoing
	for _, x := range rows {
		if x.owner != "" {
			d.inflight <- flight{outgoing: x, sent: time.Now(), err: errHeldBack}
		} else {
			parked = append(parked, x)
		}
	}
	if len(parked) > 0 {
		d.order.repark(parked[0].key, parked)
	}
}

// errHeldBack is the verdict on a relay row that was not sent because an
// earlier message of its key is unconfirmed or failed. It is no failed
// publish: the acker releases the row (outbox.Store.Release) without
// counting an attempt.
var errHeldBack = errors.New("final: held back behind an unconfirmed message with the same key")

// sendAfter publishes o behind prev (nil: no condition).
func (d *dispatcher) sendAfter(ctx context.Context, prev mq.Confirmation, o outgoing) (mq.Confirmation, error) {
	switch {
	case prev == nil:
		return d.send(ctx, o)
	case d.ordered != nil:
		return d.ordered.PublishEncodedAfter(ctx, prev, o.msg, o.body)
	default:
		return nil, mq.ErrOutOfOrder // cannot pipeline: wait for the confirm
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
		published := err == nil
		if published {
			ctx, cancel := context.WithDeadline(d.ctx, f.sent.Add(d.timeout))
			err = f.conf.Wait(ctx)
			cancel()
			if errors.Is(err, context.DeadlineExceeded) {
				err = errConfirmTimeout
			}
		}
		if f.slot {
			<-d.window
		}
		if f.key != 0 {
			d.order.settled(f.outgoing, published, err)
		}
		if err == nil {
			d.brokerDown.Store(false)
			d.acker.done(f.id)
			continue
		}
		if errors.Is(err, mq.ErrUnavailable) {
			d.brokerDown.Store(true)
		}
		if errors.Is(err, errHeldBack) {
			d.log.Debug("final: row held back behind its key; released to the table", "id", f.id, "uuid", f.msg.UUID)
		} else {
			d.log.Debug("final: publish failed, will retry", "id", f.id, "uuid", f.msg.UUID, "err", err)
		}
		d.acker.fail(failure{id: f.id, owner: f.owner, topic: f.msg.Topic, err: err})
	}
}
