package final

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox"
)

// TxBus publishes inside one SQL transaction: each message is written to
// the outbox on that transaction, so it exists if and only if the
// transaction commits. After a commit through TxBus the messages are sent
// at once; if the caller commits the transaction itself they are still
// sent, by the relay, after OutboxScanAgoTime.
type TxBus struct {
	bus *Bus
	tx  outbox.Tx
	ctx context.Context

	mu      sync.Mutex
	done    bool       // committed or rolled back
	commit  bool       // committed
	pending []outgoing // outbox rows to send after commit
	direct  []outgoing // WithConfirm(false): sent after commit, without the outbox
}

// WithTx returns a TxBus on tx; commit it with TxBus.Commit.
func (b *Bus) WithTx(tx *sql.Tx) *TxBus { return b.WithTxContext(context.Background(), tx) }

// WithTxContext is WithTx whose publishes use ctx.
func (b *Bus) WithTxContext(ctx context.Context, tx *sql.Tx) *TxBus {
	return b.WithDriverTx(ctx, outbox.SQLTx(tx))
}

// WithDriverTx is WithTxContext for a transaction that is not a *sql.Tx: a
// driver's native transaction adapted to outbox.Tx (pgxbus.WithTx adapts a
// pgx.Tx). tx must be a transaction of the bus's database.
func (b *Bus) WithDriverTx(ctx context.Context, tx outbox.Tx) *TxBus {
	return &TxBus{bus: b, tx: tx, ctx: ctx}
}

// Transaction is TransactionContext with a background context.
func (b *Bus) Transaction(tx *sql.Tx, fn func(txBus *TxBus) error) error {
	return b.TransactionContext(context.Background(), tx, fn)
}

// TransactionContext runs fn with a TxBus on tx. It commits when fn returns
// nil and rolls back when fn returns an error (which it returns) or panics
// (it re-panics after the rollback). gorm users pass gormbus.SQLTx(gormTx)
// and let this commit.
func (b *Bus) TransactionContext(ctx context.Context, tx *sql.Tx, fn func(txBus *TxBus) error) error {
	return b.DriverTransaction(ctx, outbox.SQLTx(tx), fn)
}

// DriverTransaction is TransactionContext for a transaction that is not a
// *sql.Tx (see WithDriverTx); pgxbus.Transaction calls it with a pgx.Tx.
func (b *Bus) DriverTransaction(ctx context.Context, tx outbox.Tx, fn func(txBus *TxBus) error) error {
	if tx == nil {
		return ErrNilTx
	}
	txb := b.WithDriverTx(ctx, tx)
	defer func() {
		if r := recover(); r != nil {
			_ = txb.RollBack()
			panic(r)
		}
	}()
	if err := fn(txb); err != nil {
		if rbErr := txb.RollBack(); rbErr != nil && !errors.Is(rbErr, ErrTxDone) {
			return errors.Join(err, rbErr)
		}
		return err
	}
	if txb.committed() {
		return nil // fn called Commit itself
	}
	return txb.Commit()
}

// Publish is PublishContext with the TxBus's context.
func (t *TxBus) Publish(topic string, payload []byte, opts ...message.PolicyOption) error {
	return t.PublishContext(t.ctx, topic, payload, opts...)
}

// PublishContext writes a message to the outbox on the transaction.
func (t *TxBus) PublishContext(ctx context.Context, topic string, payload []byte, opts ...message.PolicyOption) error {
	return t.PublishMessageContext(ctx, message.New(topic, payload, opts...))
}

// PublishMessage is PublishMessageContext with the TxBus's context.
func (t *TxBus) PublishMessage(m *message.Message) error {
	return t.PublishMessageContext(t.ctx, m)
}

// PublishMessageContext writes a message built with message.New (for
// callers that set its Header, Key or UUID) to the outbox on the
// transaction.
func (t *TxBus) PublishMessageContext(ctx context.Context, m *message.Message) error {
	if t.tx == nil {
		return ErrNilTx
	}
	if err := t.bus.check(m); err != nil {
		return err
	}
	m = withTrace(ctx, m)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return ErrTxDone
	}
	if !m.Policy.Confirm {
		out, err := t.bus.snapshot(m)
		if err != nil {
			return err
		}
		t.direct = append(t.direct, out)
		return nil
	}
	out, err := t.bus.stage(ctx, t.tx, m)
	if err != nil {
		return err
	}
	if out != nil {
		t.pending = append(t.pending, *out)
	}
	return nil
}

// PublishMessages is PublishMessagesContext with the TxBus's context.
func (t *TxBus) PublishMessages(msgs ...*message.Message) error {
	return t.PublishMessagesContext(t.ctx, msgs...)
}

// PublishMessagesContext writes msgs to the outbox on the transaction, as
// PublishMessageContext does each, in as few statements as the store
// allows: a store that is an outbox.BatchInserter writes many rows per
// INSERT (up to 64 rows or about 1 MiB of messages; see its package), in
// place of one INSERT per message. It checks every message first and
// writes none if one is invalid. If the write fails, some messages may be
// in the transaction already; roll it back.
func (t *TxBus) PublishMessagesContext(ctx context.Context, msgs ...*message.Message) error {
	if t.tx == nil {
		return ErrNilTx
	}
	var stored, unconfirmed []*message.Message
	for _, m := range msgs {
		if err := t.bus.check(m); err != nil {
			return err
		}
		if m = withTrace(ctx, m); m.Policy.Confirm {
			stored = append(stored, m)
		} else {
			unconfirmed = append(unconfirmed, m)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return ErrTxDone
	}
	direct := make([]outgoing, len(unconfirmed))
	for i, m := range unconfirmed {
		var err error
		if direct[i], err = t.bus.snapshot(m); err != nil {
			return err
		}
	}
	if len(stored) > 0 {
		outs, err := t.bus.stageAll(ctx, t.tx, stored)
		if err != nil {
			return err
		}
		t.pending = append(t.pending, outs...)
	}
	t.direct = append(t.direct, direct...)
	return nil
}

// Commit commits the transaction and hands its messages to the broker.
func (t *TxBus) Commit() error {
	if t.tx == nil {
		return ErrNilTx
	}
	t.mu.Lock()
	if t.done {
		t.mu.Unlock()
		return ErrTxDone
	}
	t.done, t.commit = true, true
	pending, direct := t.pending, t.direct
	t.mu.Unlock()
	if err := t.tx.Commit(t.ctx); err != nil {
		// If the commit did happen after all, the relay sends the rows.
		return txErr(err)
	}
	t.bus.enqueue(pending)
	for _, o := range direct {
		if _, err := t.bus.disp.send(t.ctx, o); err != nil {
			t.bus.log.Warn("final: fire-and-forget publish after commit failed; message lost", "topic", o.msg.Topic, "uuid", o.msg.UUID, "err", err)
		}
	}
	return nil
}

func (t *TxBus) committed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.commit
}

// RollBack rolls the transaction back; its messages are discarded.
func (t *TxBus) RollBack() error {
	if t.tx == nil {
		return ErrNilTx
	}
	t.mu.Lock()
	t.done = true
	t.pending, t.direct = nil, nil
	t.mu.Unlock()
	// Without cancel: a rollback must reach the database even when the
	// caller's context has ended (a *sql.Tx ignores it either way).
	return txErr(t.tx.Rollback(context.WithoutCancel(t.ctx)))
}

// Outbox returns the messages in the service's outbox as t's transaction
// sees them, in the order they were written: those published in it, which
// only it sees until it commits, and committed ones the bus has not sent
// and deleted yet. It is for tests that assert what a transaction
// published before it commits (package finaltest); once committed, a row
// goes as soon as the broker confirms it. It needs a started bus whose
// store reads in a transaction (outbox.TxReader), as every store of this
// module does.
func (t *TxBus) Outbox(ctx context.Context) ([]*message.Message, error) {
	if t.tx == nil {
		return nil, ErrNilTx
	}
	t.bus.mu.Lock()
	state, store := t.bus.state, t.bus.store
	t.bus.mu.Unlock()
	if state == stateNew {
		return nil, ErrNotStarted
	}
	r, ok := store.(outbox.TxReader)
	if !ok {
		return nil, fmt.Errorf("final: the outbox store %T cannot read in a transaction (outbox.TxReader)", store)
	}
	t.mu.Lock()
	done := t.done
	t.mu.Unlock()
	if done {
		return nil, ErrTxDone
	}
	var msgs []*message.Message
	for after := int64(0); ; {
		rec, ok, err := r.ReadTx(ctx, t.tx, after)
		if err != nil {
			return nil, txErr(fmt.Errorf("final: read the outbox: %w", err))
		}
		if !ok {
			return msgs, nil
		}
		if rec.Err != nil {
			return nil, fmt.Errorf("final: read the outbox: row %d: %w", rec.ID, rec.Err)
		}
		for _, p := range rec.Parts() {
			msgs = append(msgs, p.Message)
		}
		after = rec.ID
	}
}

// DriverTx returns the transaction t publishes in: for a TxBus made from a
// *sql.Tx, outbox.AsSQLTx gives that back; pgxbus.Tx gives a pgx.Tx back.
func (t *TxBus) DriverTx() outbox.Tx { return t.tx }

// txErr makes sql.ErrTxDone match ErrTxDone as well.
func txErr(err error) error {
	if errors.Is(err, sql.ErrTxDone) && !errors.Is(err, ErrTxDone) {
		return fmt.Errorf("%w: %w", ErrTxDone, err)
	}
	return err
}
