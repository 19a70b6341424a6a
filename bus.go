package final

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/finalbus/final/internal/dialects"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/outbox"
)

type busState int

const (
	stateNew busState = iota
	stateStarted
	stateClosed
)

// Bus is one service's connection to the message bus: it publishes through
// the service's outbox table and delivers the service's subscriptions.
// Create it with New, subscribe, then Start. It is safe for concurrent use.
type Bus struct {
	svcName  string
	db       *sql.DB
	provider mq.IProvider
	opt      Options
	log      *slog.Logger
	owner    string // this instance's claim owner id
	// holdLimit is how long the provider lets a delivery stay
	// unacknowledged (mq.HoldLimiter); 0: no limit.
	holdLimit time.Duration

	mu       sync.Mutex
	state    busState
	routes   map[string]*route
	routeErr error // the first failed Subscribe, returned by Start

	// Set by Start.
	store      outbox.Store
	inbox      outbox.Inbox    // nil without Inbox subscriptions
	beginner   outbox.Beginner // begins Inbox transactions
	pruner     *pruner
	declarer   *declarer // nil without subscriptions
	acker      *acker
	disp       *dispatcher
	relay      *relay
	overflow   *overflow // nil when the store cannot read rows back
	subscriber *subscriber
	stopHard   context.CancelFunc // cancels the acker's and dispatcher's waits

	// intake is held for reading while a message enters the dispatcher and
	// for writing while Shutdown closes it.
	intake       sync.RWMutex
	intakeClosed bool

	shutdownOnce sync.Once
	shutdownErr  error
	async        callbacks // PublishAsync callbacks that have not returned
}

// New returns a bus for service svcName that keeps its outbox in db and
// talks to the broker through provider. Nothing is checked or connected
// until Start, which reports bad arguments.
func New(svcName string, db *sql.DB, provider mq.IProvider, opt Options) *Bus {
	return &Bus{
		svcName:  svcName,
		db:       db,
		provider: provider,
		opt:      opt,
		log:      opt.Logger,
		owner:    svcName + "-" + randomID(),
		routes:   map[string]*route{},
	}
}

// Start is StartContext with a background context.
func (b *Bus) Start() error { return b.StartContext(context.Background()) }

// StartContext validates the configuration, migrates the outbox table,
// connects to the broker, declares the service's queue and starts the
// dispatcher, the acker, the relay and the subscribers. It fails, leaving
// nothing running, when the database or the broker cannot be reached.
func (b *Bus) StartContext(ctx context.Context) (err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case stateStarted:
		return ErrStarted
	case stateClosed:
		return ErrClosed
	}
	if err := validateService(b.svcName); err != nil {
		return err
	}
	if b.db == nil {
		return ErrNilDB
	}
	if b.provider == nil {
		return ErrNilProvider
	}
	if b.routeErr != nil {
		return b.routeErr
	}
	defaultPrefetch := b.opt.Prefetch == 0
	if err := b.opt.validate(); err != nil {
		return err
	}
	if hl, ok := b.provider.(mq.HoldLimiter); ok {
		b.holdLimit = hl.HoldLimit()
	}
	anyOrdered := false
	for _, r := range b.routes {
		anyOrdered = anyOrdered || r.ordered
	}
	if defaultPrefetch {
		b.opt.Prefetch = b.opt.defaultPrefetch(b.holdLimit, anyOrdered)
	}
	if len(b.routes) > 0 {
		if err := b.opt.validateHold(b.holdLimit, anyOrdered); err != nil {
			return err
		}
	}
	b.log = b.opt.Logger

	if err := b.db.PingContext(ctx); err != nil {
		return fmt.Errorf("final: database unreachable: %w", err)
	}
	dialect := b.opt.Dialect
	if dialect == nil {
		if dialect, err = dialects.For(b.db); err != nil {
			return fmt.Errorf("%w: Dialect: %w; set Options.Dialect (outbox/mysql.Dialect for MariaDB and MySQL)", ErrInvalidOption, err)
		}
	}
	store, err := dialect.NewStore(b.db, outboxTable(b.svcName), outbox.StoreOptions{
		RetryBase: b.opt.OutboxRetryBase,
		RetryMax:  b.opt.OutboxRetryMax,
	})
	if err != nil {
		return fmt.Errorf("final: %w", err)
	}
	if err := store.Migrate(ctx); err != nil {
		return fmt.Errorf("final: %w", err)
	}
	defer func() {
		if c, ok := store.(interface{ Close() error }); ok && err != nil {
			_ = c.Close()
		}
	}()
	if b.usesInbox() {
		if err := b.opt.validateInbox(); err != nil {
			return err
		}
		inbox, err := dialect.NewInbox(b.db, inboxTable(b.svcName))
		if err != nil {
			return fmt.Errorf("final: %w", err)
		}
		if err := inbox.Migrate(ctx); err != nil {
			return fmt.Errorf("final: %w", err)
		}
		b.inbox = inbox
		b.beginner = b.opt.Beginner
		if b.beginner == nil {
			b.beginner = outbox.SQLBeginner(b.db)
		}
	}
	if b.opt.PurgeOnStartup {
		n, err := store.Purge(ctx)
		if err != nil {
			return fmt.Errorf("final: %w", err)
		}
		b.log.Info("final: purged outbox", "rows", n)
	}

	var topics, broadcast, ordered []string
	for t, r := range b.routes {
		switch {
		case r.broadcast:
			broadcast = append(broadcast, t)
		case r.ordered:
			ordered = append(ordered, t)
		default:
			topics = append(topics, t)
		}
	}
	cfg := mq.Config{
		Service:    b.svcName,
		Topics:     topics,
		Broadcast:  broadcast,
		Ordered:    ordered,
		Prefetch:   b.opt.Prefetch,
		Purge:      b.opt.PurgeOnStartup,
		WireFormat: b.opt.WireFormat,
		Logger:     b.log,
	}
	if err := b.provider.Init(ctx, cfg); err != nil {
		return fmt.Errorf("final: broker: %w", err)
	}
	if err := b.reconcileTopology(ctx, store, cfg.Subscriptions()); err != nil {
		b.provider.Close()
		return err
	}
	if rec, ok := store.(outbox.SubscriptionRecorder); ok && len(b.routes) > 0 {
		b.declarer = startDeclarer(rec, b.owner, b.log)
	}

	hard, stopHard := context.WithCancel(context.Background())
	b.store, b.stopHard = store, stopHard
	b.acker = newAcker(hard, store, b.opt)
	b.acker.begin = outbox.SQLBeginner(b.db)
	b.disp = newDispatcher(hard, b.provider, b.acker, b.opt)
	b.relay = newRelay(store, b.disp, b.owner, b.relayOptions(store))
	b.overflow = newOverflow(store, b.disp, b.opt)
	b.acker.start(b.opt.NumAcker)
	b.disp.start()
	if len(b.routes) > 0 {
		b.subscriber = newSubscriber(b, b.routes, b.opt)
		if err := b.subscriber.start(); err != nil {
			b.declarer.stop(ctx)
			b.stopPipeline()
			b.provider.Close()
			stopHard()
			return fmt.Errorf("final: consume: %w", err)
		}
	}
	b.overflow.start()
	b.relay.start()
	if b.inbox != nil {
		b.pruner = newPruner(b.inbox, b.opt)
		b.pruner.start()
	}
	b.state = stateStarted
	b.log.Info("final: bus started", "service", b.svcName, "topics", len(topics), "broadcast", len(broadcast), "owner", b.owner)
	return nil
}

// Shutdown is ShutdownContext with a background context.
func (b *Bus) Shutdown() error { return b.ShutdownContext(context.Background()) }

// ShutdownContext stops intake (publishing then returns ErrClosed), stops
// the relay and the consumer (from then on no new handler starts:
// deliveries received but not yet handled go back to the broker when the
// provider closes, a broadcast one with the instance's own queue), waits
// for in-flight handlers, for the
// confirms of what was already handed to the broker and for PublishAsync
// callbacks, and closes the provider. Anything not confirmed stays in the
// outbox and is sent by the next instance. It is idempotent.
//
// It is bounded: it waits until Options.ShutdownTimeout has passed or ctx
// ends, whichever comes first; then it cancels the handlers' context and
// the waits for confirms, and gives what it cancelled a short grace
// (shutdownGrace) to return. Closing the broker connection adds at most
// about a second when the broker does not answer (a resource alarm, a dead
// link). Whatever is still running then is abandoned, and the error wraps
// ErrShutdownTimeout and says how many handlers, callbacks and
// unconfirmed publishes were left. Go cannot stop a goroutine: a handler
// or callback that ignores its context runs on after Shutdown returned,
// and the bus does not wait for it; an abandoned handler's delivery goes
// back to the queue when the connection closes, so another instance may
// handle it meanwhile. With nothing abandoned, no goroutine of the bus is
// left running.
func (b *Bus) ShutdownContext(ctx context.Context) error {
	b.shutdownOnce.Do(func() { b.shutdownErr = b.shutdown(ctx) })
	return b.shutdownErr
}

// shutdownGrace is how long Shutdown waits, past its deadline, for the
// handlers and the confirm waits it cancelled there to return.
const shutdownGrace = 500 * time.Millisecond

// closeBeginner releases what Options.Beginner holds for the bus.
func (b *Bus) closeBeginner() error {
	if c, ok := b.opt.Beginner.(outbox.BusOwned); ok {
		if err := c.CloseWithBus(); err != nil {
			return fmt.Errorf("final: close Options.Beginner: %w", err)
		}
	}
	return nil
}

func (b *Bus) shutdown(ctx context.Context) error {
	b.mu.Lock()
	started := b.state == stateStarted
	b.state = stateClosed
	b.mu.Unlock()
	if !started {
		return b.closeBeginner()
	}
	began := time.Now()
	// deadline ends at the bound; grace shutdownGrace after it.
	deadline, cancel := context.WithTimeout(ctx, b.opt.ShutdownTimeout)
	defer cancel()
	grace, endGrace := context.WithCancel(context.Background())
	defer endGrace()
	stopGrace := context.AfterFunc(deadline, func() { time.AfterFunc(shutdownGrace, endGrace) })
	defer stopGrace()

	var (
		errs                             []error
		handlers, callbacks, unconfirmed int
		pipelineStuck                    bool
	)
	b.relay.stop()
	b.overflow.stop()
	b.declarer.stop(deadline)
	if b.pruner != nil {
		b.pruner.stop()
	}
	if b.subscriber != nil {
		handlers = b.subscriber.stop(deadline, grace)
	}
	// Closed here, not in the goroutine, so that no PublishAsync callback
	// registers after the wait for them below.
	b.closeIntake()
	done := make(chan struct{})
	go func() { b.waitPipeline(); close(done) }()
	select {
	case <-done:
	case <-deadline.Done():
		unconfirmed = len(b.disp.window) // publishes awaiting their verdict
	}
	b.async.wait(deadline)
	b.stopHard() // ends the dispatcher's, the acker's and the callbacks' waits
	select {
	case <-done:
	case <-grace.Done():
		pipelineStuck = true
	}
	callbacks = b.async.wait(grace)
	// Closing the provider also fails a publish blocked on the connection.
	if err := b.provider.Close(); err != nil {
		errs = append(errs, err)
	}
	if pipelineStuck {
		t := time.NewTimer(shutdownGrace)
		select {
		case <-done:
			pipelineStuck = false
		case <-t.C:
		}
		t.Stop()
	}
	if !pipelineStuck {
		if s, ok := b.store.(interface{ Close() error }); ok {
			_ = s.Close() // the acker may still use it otherwise
		}
		if err := b.closeBeginner(); err != nil {
			errs = append(errs, err)
		}
	}
	var left []string
	for _, l := range []struct {
		n    int
		what string
	}{
		{handlers, "handlers still running"},
		{callbacks, "PublishAsync callbacks still running"},
		{unconfirmed, "publishes unconfirmed (their rows stay in the outbox)"},
	} {
		if l.n > 0 {
			left = append(left, fmt.Sprintf("%d %s", l.n, l.what))
		}
	}
	if pipelineStuck {
		left = append(left, "the dispatcher blocked in a publish")
	}
	if len(left) > 0 {
		err := fmt.Errorf("%w after %s; abandoned: %s", ErrShutdownTimeout,
			time.Since(began).Round(time.Millisecond), strings.Join(left, ", "))
		b.log.Warn("final: shutdown abandoned work", "err", err)
		errs = append(errs, err)
	}
	b.log.Info("final: bus stopped", "service", b.svcName)
	return errors.Join(errs...)
}

// usesInbox reports whether a subscription has Inbox.
func (b *Bus) usesInbox() bool {
	for _, r := range b.routes {
		if r.inbox {
			return true
		}
	}
	return false
}

// stopPipeline closes intake and waits for the dispatcher and the acker to
// finish what they hold.
func (b *Bus) stopPipeline() {
	b.closeIntake()
	b.waitPipeline()
}

// closeIntake stops the fast path and PublishAsync from taking messages.
func (b *Bus) closeIntake() {
	b.intake.Lock()
	b.intakeClosed = true
	b.disp.close()
	b.intake.Unlock()
}

// waitPipeline waits for the dispatcher and the acker to finish what they
// hold, once intake is closed.
func (b *Bus) waitPipeline() {
	b.disp.wait()
	b.relay.finishHeld() // every verdict is in: the held claims end
	b.acker.closeAndWait()
}

// enqueue hands committed rows to the fast path. What does not fit, in
// messages (DispatchQueueSize) or in bytes (DispatchQueueBytes), the
// overflow reads back when there is room; what it cannot take, or what
// arrives during Shutdown, is left to the relay.
func (b *Bus) enqueue(out []outgoing) {
	b.intake.RLock()
	defer b.intake.RUnlock()
	if b.intakeClosed {
		return
	}
	for _, o := range out {
		if b.overflow.join(o) {
			continue // behind the rows already waiting there
		}
		if b.disp.offer(o) || b.overflow.add(o) {
			continue
		}
		if o.key != 0 {
			b.disp.order.leftBehind(o.key, o.id)
		}
		b.log.Debug("final: dispatch queue full (messages or bytes); left to the relay", "id", o.id)
	}
}

// Publish is PublishContext with a background context.
func (b *Bus) Publish(topic string, payload []byte, opts ...message.PolicyOption) error {
	return b.PublishContext(context.Background(), topic, payload, opts...)
}

// PublishContext publishes one message outside any business transaction.
// With the default policy the message is written to the outbox (its own
// one-statement transaction) and is safe once this returns nil. With
// WithConfirm(false) it is handed to the broker directly: it may be lost.
func (b *Bus) PublishContext(ctx context.Context, topic string, payload []byte, opts ...message.PolicyOption) error {
	return b.PublishMessageContext(ctx, message.New(topic, payload, opts...))
}

// PublishMessage is PublishMessageContext with a background context.
func (b *Bus) PublishMessage(m *message.Message) error {
	return b.PublishMessageContext(context.Background(), m)
}

// PublishMessageContext publishes a message built with message.New, for
// callers that set its Header, Key or UUID. It behaves as PublishContext.
func (b *Bus) PublishMessageContext(ctx context.Context, m *message.Message) error {
	if err := b.check(m); err != nil {
		return err
	}
	m = withTrace(ctx, m)
	if !m.Policy.Confirm {
		_, err := b.provider.Publish(ctx, m)
		return err
	}
	out, err := b.stage(ctx, nil, m)
	if err != nil {
		return err
	}
	if out != nil {
		b.enqueue([]outgoing{*out})
	}
	return nil
}

// stage writes m to the outbox on tx (nil: on its own) and returns what the
// fast path should send after the commit, or nil for a delayed message.
func (b *Bus) stage(ctx context.Context, tx outbox.Tx, m *message.Message) (*outgoing, error) {
	out, err := b.snapshot(m)
	if err != nil {
		return nil, err
	}
	if m.Policy.Delay > 0 {
		// A delayed message goes when it is due, so it is not ordered
		// with the other messages of its key.
		out.key = 0
	}
	row := outbox.Row{Body: out.body, OrderKey: out.key, AvailableIn: b.availableIn(m)}
	out.sendBy = fastPathSendBy(row.AvailableIn)
	if out.id, err = b.store.Insert(ctx, tx, row); err != nil {
		return nil, txErr(fmt.Errorf("final: publish %q: %w", m.Topic, err))
	}
	if m.Policy.Delay > 0 {
		return nil, nil
	}
	return &out, nil
}

// stageAll is stage for several messages, written with one
// outbox.InsertAll: it returns those of msgs the bus sends after the
// commit (not the delayed ones), in order. With Options.PackMessages, a
// run of messages that may share a row (packRun) goes as one pack.
func (b *Bus) stageAll(ctx context.Context, tx outbox.Tx, msgs []*message.Message) ([]outgoing, error) {
	snaps := make([]outgoing, len(msgs))
	for i, m := range msgs {
		var err error
		if snaps[i], err = b.snapshot(m); err != nil {
			return nil, err
		}
		if m.Policy.Delay > 0 {
			snaps[i].key = 0 // as in stage
		}
	}
	var (
		outs  = make([]outgoing, 0, len(msgs))
		rows  = make([]outbox.Row, 0, len(msgs))
		later = make([]bool, 0, len(msgs)) // the row is delayed: not sent after the commit
	)
	for i := 0; i < len(msgs); {
		out, row := snaps[i], outbox.Row{Body: snaps[i].body, OrderKey: snaps[i].key, AvailableIn: b.availableIn(msgs[i])}
		n := b.packRun(msgs[i:], snaps[i:])
		if n > 1 {
			out = outgoing{pack: make([]outbox.Part, n)}
			bodies := make([][]byte, n)
			for j, s := range snaps[i : i+n] {
				out.pack[j] = outbox.Part{Message: s.msg, Body: s.body}
				bodies[j] = s.body
			}
			row.Body = outbox.Pack(bodies)
		}
		out.sendBy = fastPathSendBy(row.AvailableIn)
		outs, rows = append(outs, out), append(rows, row)
		later = append(later, msgs[i].Policy.Delay > 0)
		i += n
	}
	ids, err := outbox.InsertAll(ctx, b.store, tx, rows)
	if err == nil && len(ids) != len(rows) {
		err = fmt.Errorf("the store returned %d ids for %d rows", len(ids), len(rows))
	}
	if err != nil {
		return nil, txErr(fmt.Errorf("final: publish %d messages: %w", len(msgs), err))
	}
	sent := outs[:0]
	for i := range outs {
		if later[i] {
			continue
		}
		outs[i].id = ids[i]
		sent = append(sent, outs[i])
	}
	return sent, nil
}

// packRun returns how many of msgs, from the first, go in one row: those
// of a run of the same topic that are neither keyed (a keyed row keeps its
// place in its key's order) nor delayed (a delayed row waits for its due
// time), up to outbox.MaxPackMessages messages and outbox.MaxPackBytes;
// 1 when the first cannot share a row or Options.PackMessages is off.
// Runs stay runs so that the rows keep the messages' order. The messages
// of one row share its fate: the row is retried whole if one of them
// fails, and one topic is what they are most likely to share anyway.
func (b *Bus) packRun(msgs []*message.Message, snaps []outgoing) int {
	packable := func(i int) bool {
		return snaps[i].key == 0 && msgs[i].Policy.Delay == 0 && msgs[i].Topic == msgs[0].Topic
	}
	if !b.opt.PackMessages || !packable(0) {
		return 1
	}
	n, size := 0, 0
	for n < len(msgs) && n < outbox.MaxPackMessages && size < outbox.MaxPackBytes && packable(n) {
		size += len(snaps[n].body)
		n++
	}
	return n
}

// snapshot encodes m and copies its routing fields: what is sent later is
// what was stored now, so the caller may reuse m once Publish returns. In
// the CloudEvents wire format, whose body is the payload, the copy is
// whole (header, payload, content type, time): the provider maps it to the
// transport without decoding the stored bytes again.
func (b *Bus) snapshot(m *message.Message) (outgoing, error) {
	body, err := message.Marshal(m)
	if err != nil {
		return outgoing{}, err
	}
	policy := *m.Policy
	msg := &message.Message{UUID: m.UUID, Topic: m.Topic, Key: m.Key, Policy: &policy}
	if b.opt.WireFormat == mq.CloudEvents {
		msg.Header = maps.Clone(m.Header)
		msg.Payload = bytes.Clone(m.Payload)
		if msg.Payload == nil {
			msg.Payload = []byte{}
		}
		msg.ContentType, msg.Time = m.ContentType, m.Time
	}
	return outgoing{key: outbox.OrderKey(m.Topic, m.Key), msg: msg, body: body}, nil
}

// check validates a message against the bus's state and options, filling
// in what message.New would have.
func (b *Bus) check(m *message.Message) error {
	b.mu.Lock()
	state := b.state
	b.mu.Unlock()
	switch state {
	case stateNew:
		return ErrNotStarted
	case stateClosed:
		return ErrClosed
	}
	if m == nil {
		return fmt.Errorf("%w: nil message", ErrInvalidPolicy)
	}
	if err := validateTopic(m.Topic); err != nil {
		return err
	}
	if len(m.Payload) > b.opt.MaxPayloadBytes {
		return fmt.Errorf("%w: %d bytes, limit %d (Options.MaxPayloadBytes)", ErrPayloadTooLarge, len(m.Payload), b.opt.MaxPayloadBytes)
	}
	if m.UUID == "" {
		m.UUID = message.NewUUID()
	} else if len(m.UUID) > MaxUUIDLen {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidUUID, len(m.UUID), MaxUUIDLen)
	}
	if m.Header == nil {
		m.Header = message.Header{}
	}
	if b.opt.WireFormat == mq.CloudEvents {
		if err := mq.CheckHeader(m.Header); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidHeader, err)
		}
	}
	if m.Policy == nil {
		m.Policy = message.DefaultPolicy()
	}
	switch p := m.Policy; {
	case p.TTL < 0 || p.Delay < 0:
		return fmt.Errorf("%w: negative TTL or Delay", ErrInvalidPolicy)
	case p.Delay > 0 && !p.Confirm:
		return fmt.Errorf("%w: WithDelay needs the outbox, so it cannot go with WithConfirm(false)", ErrInvalidPolicy)
	}
	return nil
}

// availableIn is when the relay may first take the row: at its due time if
// delayed, else after the fast path had its chance.
func (b *Bus) availableIn(m *message.Message) time.Duration {
	if m.Policy.Delay > 0 {
		return m.Policy.Delay
	}
	return b.opt.OutboxScanAgoTime
}

// fastPathSendBy is the last moment the fast path may start the publish
// of a row inserted now that the relays may claim availableIn later: the
// middle of that window, so that the confirm and the delete (AckLinger is
// capped at the other half) land before a relay could send the row again,
// unless the confirm itself takes most of that half.
// It is measured from before the insert, so it falls early, never late.
// (Up to the window's end, a queue deep enough to hold rows that long
// publishes rows a relay is about to claim: with DispatchQueueSize raised
// to 65,536, 10 messages per transaction on MariaDB gave 2–3 % duplicates.)
func fastPathSendBy(availableIn time.Duration) time.Time { return time.Now().Add(availableIn / 2) }

func randomID() string {
	var r [6]byte
	_, _ = rand.Read(r[:])
	return hex.EncodeToString(r[:])
}
