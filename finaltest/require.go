package finaltest

import (
	"errors"
	"fmt"
	"strings"

	"github.com/finalbus/final"
	"github.com/finalbus/final/message"
)

// RequirePublishedTx fails the test unless txBus's transaction, before it
// commits, sees a message of topic in the outbox that meets every match,
// and returns the first such message. It fails too when the outbox cannot
// be read (the bus is not started, the transaction has ended). The
// failure lists the messages the transaction sees.
func RequirePublishedTx(t TB, txBus *final.TxBus, topic string, matches ...Match) *message.Message {
	t.Helper()
	found, all, ok := find(t, txBus, topic, matches)
	if !ok {
		return nil
	}
	if len(found) == 0 {
		t.Fatalf("finaltest: no message %s in the transaction\n%s", wanted(topic, matches), listing(all, topic, matches))
		return nil
	}
	return found[0]
}

// RequirePublishedCountTx is RequirePublishedTx for exactly n messages: it
// fails the test unless n messages of topic meet every match, and returns
// them in the order they were published.
func RequirePublishedCountTx(t TB, txBus *final.TxBus, n int, topic string, matches ...Match) []*message.Message {
	t.Helper()
	found, all, ok := find(t, txBus, topic, matches)
	if !ok {
		return nil
	}
	if len(found) != n {
		t.Fatalf("finaltest: %s %s in the transaction, want %d\n%s", messages(len(found)), wanted(topic, matches), n, listing(all, topic, matches))
		return nil
	}
	return found
}

// RequireNotPublishedTx fails the test if txBus's transaction sees a
// message of topic in the outbox that meets every match.
func RequireNotPublishedTx(t TB, txBus *final.TxBus, topic string, matches ...Match) {
	t.Helper()
	found, all, ok := find(t, txBus, topic, matches)
	if ok && len(found) > 0 {
		t.Fatalf("finaltest: %s %s in the transaction, want none\n%s", messages(len(found)), wanted(topic, matches), listing(all, topic, matches))
	}
}

// find reads the outbox in txBus's transaction and returns the messages
// of topic that meet every match, and all it read; ok is false once it
// has failed the test.
func find(t TB, txBus *final.TxBus, topic string, matches []Match) (found, all []*message.Message, ok bool) {
	t.Helper()
	if txBus == nil {
		t.Fatalf("finaltest: nil *final.TxBus")
		return nil, nil, false
	}
	all, err := txBus.Outbox(t.Context())
	if err != nil {
		t.Fatalf("finaltest: read the outbox: %v", err)
		return nil, nil, false
	}
	for _, m := range all {
		if m.Topic == topic && mismatch(m, matches) == nil {
			found = append(found, m)
		}
	}
	return found, all, true
}

// mismatch returns what the first match m fails says, or nil.
func mismatch(m *message.Message, matches []Match) error {
	for _, mt := range matches {
		if mt.check == nil {
			return errors.New("an empty Match (from Matching with a nil check, or a zero Match)")
		}
		if err := mt.check(m); err != nil {
			return err
		}
	}
	return nil
}

// wanted describes the messages sought: `of topic "a" with key "k"`.
func wanted(topic string, matches []Match) string {
	s := fmt.Sprintf("of topic %q", topic)
	for i, mt := range matches {
		sep := ", "
		if i == 0 {
			sep = " with "
		}
		s += sep + mt.want
	}
	return s
}

// listing lists the messages the transaction sees, with what differs in
// those of topic.
func listing(all []*message.Message, topic string, matches []Match) string {
	if len(all) == 0 {
		return "the outbox holds no message as the transaction sees it"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "the outbox holds %s as the transaction sees it:", messages(len(all)))
	for i, m := range all {
		fmt.Fprintf(&b, "\n  %d. %q", i+1, m.Topic)
		if m.Key != "" {
			fmt.Fprintf(&b, " key %q", m.Key)
		}
		if m.ContentType != "" {
			fmt.Fprintf(&b, " content type %s", m.ContentType)
		}
		if len(m.Header) > 0 {
			fmt.Fprintf(&b, " header %v", map[string]any(m.Header))
		}
		fmt.Fprintf(&b, " payload %s", shown(m))
		if m.Topic == topic {
			if err := mismatch(m, matches); err != nil {
				fmt.Fprintf(&b, ": %v", err)
			} else {
				b.WriteString(": matches")
			}
		}
	}
	return b.String()
}

// messages is "1 message" or "n messages".
func messages(n int) string {
	if n == 1 {
		return "1 message"
	}
	return fmt.Sprintf("%d messages", n)
}

// shown shows a message's payload: a msgpack value decoded (its bytes say
// nothing to a reader), anything else as snippet does.
func shown(m *message.Message) string {
	if m.ContentType == final.MsgpackCodec.Name() {
		var v any
		if err := final.MsgpackCodec.Unmarshal(m.Payload, &v); err == nil {
			return fmt.Sprintf("(msgpack) %v", v)
		}
	}
	return snippet(m.Payload)
}
