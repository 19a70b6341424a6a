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
	"github.com/finalbus/final/outbox"
)

// outgoing is an outbox row on its way to the broker.
type outgoing struct {
	id    int64            // outbox row id
	key   int64            // outbox.OrderKey; 0: not ordered
	owner string           // the relay's claim owner; "" on the fast path
	msg   *message.Message // routing: topic, UUID, policy; nil for a pack
	body  []byte           // the bytes stored in the row: the envelope format's body
	// pack is the messages of a row that holds several (outbox.Pack), each
	// with its msg and body as above; nil for a row of one message. A pack
	// is never keyed.
	pack []outbox.Part
	// read: the row was read from the table (outgoingOf), so its payloads
	// are slices of its body (outbox.Record.Decode), not bytes of their own.
	read bool
	// sendBy is the last moment a publish of the row (of the first
	// message of a pack) may start: for a claimed row, its lease's end less PublishTimeout, so that the publish
	// is settled before another relay may claim the row; for a committed
	// one, the middle of its fast-path window (fastPathSendBy: half
	// OutboxScanAgoTime after its insert; the relays may claim it at the
	// end), so that its confirm and delete normally land first. Both are
	// measured from before the statement that set them in the table, so
	// they fall early, never late. A row past it is left in the table,
	// where it is or soon becomes available to the relays. Zero: no limit.
	sendBy time.Time
	// held is the relay's held claim the row is in, which takes its
	// verdict instead of the acker; nil for every other row.
	held *heldBatch
}

// late reports whether o's window has closed (see outgoing.sendBy).
func (o outgoing) late(now time.Time) bool { return !o.sendBy.IsZero() && now.After(o.sendBy) }

// size is what o counts against Options.DispatchQueueBytes: its bodies,
// and its payloads where they are bytes of their own (a committed row's,
// kept when the message goes whole).
func (o outgoing) size() int64 {
	n := len(o.body)
	if o.msg != nil && !o.read {
		n += len(o.msg.Payload)
	}
	for _, p := range o.pack {
		n += len(p.Body)
		if !o.read {
			n += len(p.Message.Payload)
		}
	}
	return int64(n)
}

// outgoingOf is the outgoing of a row read from the table (claimed by the
// relay or read back by the overflow), which the caller has checked has no
// Err.
func outgoingOf(rec outbox.Record) outgoing {
	o := outgoing{id: rec.ID, key: rec.OrderKey, msg: rec.Message, body: rec.Body, read: true}
	if rec.Pack != nil {
		o.body, o.pack = nil, rec.Pack // the parts' bodies are slices of it
	}
	return o
}

// flight is a publish waiting for its confirm.
type flight struct {
	outgoing
	conf mq.Confirmation
	sent time.Time
	err  error // the publish failed; conf is nil
	slot bool  // holds a slot of the window
	// verdict gathers the verdicts on a pack's messages, each a flight of
	// its own (msg is the message's, part its index); nil for a row of one
	// message.
	verdict *packVerdict
	part    int
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
	whole    bool                // the wire format sends the message, not the stored bytes
	ordered  mq.OrderedPublisher // the provider, if it can publish after a given publish
	order    *keyOrder
	bytes    *byteBudget
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
	bytes := &byteBudget{max: int64(o.DispatchQueueBytes)}
	return &dispatcher{
		provider: p,
		encoded:  encoded,
		whole:    o.WireFormat == mq.CloudEvents,
		ordered:  ordered,
		order:    newKeyOrder(o.DispatchQueueSize, bytes),
		bytes:    bytes,
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

// offer queues o without blocking; false means the queue is full, in
// messages or in bytes, and the row is left to the relay.
func (d *dispatcher) offer(o outgoing) bool {
	if !d.bytes.tryTake(o.size()) {
		return false
	}
	select {
	case d.queue <- o:
		return true
	default:
		d.bytes.release(o.size())
		return false
	}
}

// submit queues o, waiting for room in messages and in bytes; the relay
// and the overflow use it for backpressure.
func (d *dispatcher) submit(ctx context.Context, o outgoing) error {
	// In the envelope format the body is what is sent: the decoded payload,
	// as big, need not be held too. In the CloudEvents format the message
	// is what is sent, and the body goes along for a provider that knows
	// only the envelope.
	if d.encoded != nil && !d.whole {
		o.msg = routing(o.msg)
		for i := range o.pack {
			o.pack[i].Message = routing(o.pack[i].Message)
		}
	}
	if err := d.bytes.take(ctx, o.size()); err != nil {
		return err
	}
	select {
	case d.queue <- o:
		return nil
	case <-ctx.Done():
		d.bytes.release(o.size())
		return ctx.Err()
	}
}

// routing returns m without its payload and header, which the envelope
// format does not need beside the stored bytes.
func routing(m *message.Message) *message.Message {
	if m == nil || m.Payload == nil {
		return m
	}
	return &message.Message{UUID: m.UUID, Topic: m.Topic, Key: m.Key, Policy: m.Policy}
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
			// The row waited past the moment its publish had to start
			// by: a relay may claim it (a claimed row: another relay may
			// be sending it now) before a publish's confirm and delete
			// would land. It stays in the table for the relays.
			<-d.window
			d.bytes.release(o.size())
			d.log.Debug("final: row left to the relay; it waited too long to be sent", "id", o.id)
			if o.held != nil {
				o.held.failed(failure{id: o.id, owner: o.owner, err: errHeldBack})
			}
			continue
		}
		if o.pack != nil {
			d.publishPack(o)
			continue
		}
		conf, err := d.send(d.ctx, o)
		d.inflight <- d.sent(o, conf, err)
	}
}

// publishPack publishes the messages of a pack one after another, each in
// a slot of the window (the first one's is taken already, and the row was
// not late then). The rest follow the first whatever the time: sendBy
// leaves the confirms and the delete half the fast path's window, or
// PublishTimeout of a lease, and a pack is at most 64 messages (a relay
// claims about OutboxScanOffset messages in all). Stopping part way would
// leave the row to the relays with its confirmed messages, to be sent
// again: at 10 messages a transaction on PostgreSQL that gave about 1,600
// duplicates in a round of 100,000 messages. Once one publish fails, the
// rest are not tried and share its error. The confirm loop gives the row a
// single verdict once every message has its own (packVerdict).
func (d *dispatcher) publishPack(o outgoing) {
	parts, v := o.pack, &packVerdict{left: len(o.pack), confirmed: make([]bool, len(o.pack))}
	var stop error
	for i, p := range parts {
		f := flight{outgoing: o, err: stop, verdict: v, part: i}
		f.msg, f.body, f.outgoing.pack = p.Message, nil, nil
		if stop == nil {
			if i > 0 {
				d.window <- struct{}{}
			}
			f.conf, f.err = d.send(d.ctx, outgoing{msg: p.Message, body: p.Body})
			f.slot, stop = true, f.err
		}
		f.sent = time.Now()
		d.inflight <- f
	}
	d.bytes.release(o.size())
}

// sent returns the flight of a row whose publish returned, and releases its
// bytes: once written to the connection the body is no longer needed, so a
// flight does not keep it (a row read from the table still does while its
// message, whose payload is a slice of it, waits for the confirm).
func (d *dispatcher) sent(o outgoing, conf mq.Confirmation, err error) flight {
	d.bytes.release(o.size())
	o.body = nil
	return flight{outgoing: o, conf: conf, sent: time.Now(), err: err, slot: true}
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
		d.bytes.release(o.size())
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
			d.inflight <- d.sent(r, conf, nil)
			continue
		}
		if errors.Is(err, mq.ErrOutOfOrder) { // r itself waits too
			<-d.window // nothing was sent
			d.holdBack(ready[i:])
		} else {
			d.inflight <- d.sent(r, nil, err)
			d.holdBack(ready[i+1:])
		}
		return
	}
}

// holdBack returns rows that may not be published now: fast-path rows wait
// parked, relay rows are given back to the table (errHeldBack: released,
// not failed).
func (d *dispatcher) holdBack(rows []outgoing) {
	var parked, relayed []outgoing
	for _, x := range rows {
		if x.owner != "" {
			relayed = append(relayed, x)
		} else {
			parked = append(parked, x)
		}
	}
	if len(parked) > 0 {
		d.order.repark(parked[0].key, parked)
	}
	// Unsent from now on, not from when their verdict is settled: the
	// publish loop may take the next row of their key before that.
	d.order.giveBack(relayed)
	for _, x := range relayed {
		d.bytes.release(x.size())
		d.inflight <- flight{outgoing: x, sent: time.Now(), err: errHeldBack}
	}
}

// errHeldBack is the verdict on a relay row that was not sent because an
// earlier message of its key is unconfirmed or failed, or, for a row of a
// held claim, because its window closed or the relay stopped before it
// was queued. It is no failed publish: the acker releases the row
// (outbox.Store.Release), or the held claim leaves it as it was, without
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
		} else if errors.Is(err, mq.ErrUnavailable) {
			d.brokerDown.Store(true)
		}
		var split []int
		if f.verdict != nil {
			var last bool
			if err, last = f.verdict.settle(f.part, published, err); !last {
				continue
			}
			if err != nil {
				split = f.verdict.unconfirmed()
			}
		}
		if err == nil {
			d.confirmed(f.outgoing)
			continue
		}
		if errors.Is(err, errHeldBack) {
			d.log.Debug("final: row held back behind its key; released to the table", "id", f.id, "uuid", f.msg.UUID)
		} else {
			d.log.Debug("final: publish failed, will retry", "id", f.id, "uuid", f.msg.UUID, "err", err)
		}
		d.failed(f.outgoing, failure{id: f.id, owner: f.owner, topic: f.msg.Topic, err: err, split: split})
	}
}

// confirmed hands the confirm of o to what writes it: o's held claim, or
// the acker.
func (d *dispatcher) confirmed(o outgoing) {
	if o.held != nil {
		o.held.confirmed(o.id)
		return
	}
	d.acker.done(o.id)
}

// failed hands the failure of o to what writes it: o's held claim, or the
// acker.
func (d *dispatcher) failed(o outgoing, f failure) {
	if o.held != nil {
		o.held.failed(f)
		return
	}
	d.acker.fail(f)
}

// byteBudget counts the bytes of the rows the dispatcher holds against
// Options.DispatchQueueBytes: rows queued or being published (moving) and
// keyed rows parked behind an unsent row of their key (parked). A row is
// counted from the moment it is queued until it is published or left to
// the relay.
//
// A committed row is taken only if it fits (or nothing is held), else it is
// left to the overflow or the relay. The relay and the overflow wait for
// room, and go first: while one waits, committed rows are left to them, as
// a blocked send on a full channel goes before a new one (so a keyed row
// committed meanwhile goes by the relay). A waiter also goes when nothing
// but parked rows is held, since those may be waiting for the very row the
// relay brings. So the dispatcher holds at most DispatchQueueBytes plus one
// row (a message, or a pack: at most 1 MiB plus one message).
type byteBudget struct {
	mu      sync.Mutex
	max     int64
	moving  int64
	parked  int64
	peak    int64         // highest moving + parked so far, for tests
	waiters int           // relay and overflow submits waiting for room
	wake    chan struct{} // closed when bytes are released; nil: nobody waits
}

// tryTake counts n bytes of a committed row if they fit.
func (b *byteBudget) tryTake(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	held := b.moving + b.parked
	if b.waiters > 0 || held > 0 && held+n > b.max {
		return false
	}
	b.add(n)
	return true
}

// take counts n bytes of a relay or overflow row, waiting for room until
// ctx ends.
func (b *byteBudget) take(ctx context.Context, n int64) error { return b.await(ctx, n, true) }

// waitRoom waits until n bytes fit, or ctx ends, without counting them:
// the overflow reads a batch back only once it fits.
func (b *byteBudget) waitRoom(ctx context.Context, n int64) error { return b.await(ctx, n, false) }

func (b *byteBudget) await(ctx context.Context, n int64, take bool) error {
	for {
		b.mu.Lock()
		if b.moving == 0 || b.moving+b.parked+n <= b.max {
			if take {
				b.add(n)
			}
			b.mu.Unlock()
			return nil
		}
		if b.wake == nil {
			b.wake = make(chan struct{})
		}
		wake := b.wake
		b.waiters++
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
		}
		b.mu.Lock()
		b.waiters--
		b.mu.Unlock()
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

func (b *byteBudget) add(n int64) {
	b.moving += n
	b.peak = max(b.peak, b.moving+b.parked)
}

// release uncounts n bytes of a row that left: published or left to the
// relay.
func (b *byteBudget) release(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.moving -= n
	b.freed()
}

// park moves n bytes from moving to parked, unpark back; dropParked
// uncounts parked rows that were left to the relay.
func (b *byteBudget) park(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.moving -= n
	b.parked += n
	b.freed() // the relay may go when nothing moves
}

func (b *byteBudget) unpark(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.parked -= n
	b.moving += n
}

func (b *byteBudget) dropParked(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.parked -= n
	b.freed()
}

// freed wakes the waiting relay; b.mu is held.
func (b *byteBudget) freed() {
	if b.wake != nil {
		close(b.wake)
		b.wake = nil
	}
}

// room returns the bytes that fit now, at least 1.
func (b *byteBudget) room() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return max(b.max-b.moving-b.parked, 1)
}

// held returns the bytes held and the highest ever held.
func (b *byteBudget) held() (now, peak int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.moving + b.parked, b.peak
}
