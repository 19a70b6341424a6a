package finaltest

import (
	"github.com/finalbus/final"
	"github.com/finalbus/final/message"
)

// Run runs chain, middlewares then the handler last, once on m, as the
// bus runs one attempt of a subscription's delivery, with the same code
// (final.RunChain): the chain's Context has m's Topic, Key and Message,
// Attempt 1 and t.Context() as its Context; Tx and TxBus are nil. It
// returns the chain's error; a panic in the chain is an error wrapping
// final.ErrHandlerPanic, as for the bus. A nil m or handler fails the
// test.
func Run(t TB, m *message.Message, chain ...final.HandlerFunc) error {
	t.Helper()
	return run(t, nil, m, chain)
}

// RunInTx is Run as an Inbox subscription runs its chain: Context.Tx is
// txBus's transaction and Context.TxBus is txBus, so that the chain's
// writes and publishes go into that transaction, where the test checks
// them (RequirePublishedTx) before it rolls back. Unlike the bus it
// neither records m in the inbox nor commits, whatever the chain returns.
// txBus comes from a started bus's WithTx (NewBus).
func RunInTx(t TB, txBus *final.TxBus, m *message.Message, chain ...final.HandlerFunc) error {
	t.Helper()
	if txBus == nil {
		t.Fatalf("finaltest: RunInTx: nil *final.TxBus")
		return nil
	}
	return run(t, txBus, m, chain)
}

func run(t TB, txBus *final.TxBus, m *message.Message, chain []final.HandlerFunc) error {
	t.Helper()
	if m == nil {
		t.Fatalf("finaltest: run a chain: nil message")
		return nil
	}
	if len(chain) == 0 {
		t.Fatalf("finaltest: run a chain: no handler")
		return nil
	}
	for i, h := range chain {
		if h == nil {
			t.Fatalf("finaltest: run a chain: chain[%d] is nil", i)
			return nil
		}
	}
	return final.RunChain(t.Context(), m, 1, txBus, chain...)
}

// ValueMessage returns a message of topic whose payload is v encoded with
// codec (nil: final.MsgpackCodec), as final.PublishValue publishes it, for
// running a final.Typed handler. A v the codec cannot encode fails the
// test.
func ValueMessage[T any](t TB, codec final.Codec, topic string, v T, opts ...message.PolicyOption) *message.Message {
	t.Helper()
	if codec == nil {
		codec = final.MsgpackCodec
	}
	payload, err := codec.Marshal(v)
	if err != nil {
		t.Fatalf("finaltest: encode %T: %v", v, err)
		return nil
	}
	m := message.New(topic, payload, opts...)
	m.ContentType = codec.Name()
	return m
}
