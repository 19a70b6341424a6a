package nats

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// Headers the provider sets besides the wire format's.
const (
	// HeaderTTL carries a message's Policy.TTL in milliseconds; consumers
	// drop the message once it has been in its stream that long.
	HeaderTTL = "Final-Ttl"
	// HeaderDeadReason, HeaderDeadAt, HeaderDeadTopic and HeaderDeadFrom are
	// set on a dead letter: why (percent-encoded, as CloudEvents values
	// are), when (RFC 3339), the topic, and the stream and consumer it came
	// from ("<stream>/<consumer>").
	HeaderDeadReason = "Final-Dead-Reason"
	HeaderDeadAt     = "Final-Dead-At"
	HeaderDeadTopic  = "Final-Dead-Topic"
	HeaderDeadFrom   = "Final-Dead-From"
	// HeaderReplayTo names the one consumer a replayed dead letter is for:
	// the other consumers of its stream acknowledge it without handing it
	// out (see ReplayDeadLetters).
	HeaderReplayTo = "Final-Replay-To"
)

const (
	headerContentType = "Content-Type"
	cePrefix          = "ce-"
)

// encode returns msg as a NATS message in format f, published by source:
// body is msg encoded by message.Marshal, used by the Envelope format.
// Both formats carry the UUID as Nats-Msg-Id, so that the stream's
// duplicate window drops a message sent again, and the TTL as HeaderTTL.
func encode(msg *message.Message, body []byte, f mq.WireFormat, source string, now time.Time) *natsgo.Msg {
	h := make(natsgo.Header, len(msg.Header)+10)
	m := &natsgo.Msg{Header: h}
	if f == mq.CloudEvents {
		eventHeaders(h, msg, source, now)
		m.Data = msg.Payload
	} else {
		h.Set(headerContentType, mq.EnvelopeContentType)
		m.Data = body
	}
	h.Set(jetstream.MsgIDHeader, msg.UUID)
	if msg.Policy != nil && msg.Policy.TTL > 0 {
		h.Set(HeaderTTL, strconv.FormatInt(max(msg.Policy.TTL.Milliseconds(), 1), 10))
	}
	return m
}

// ceNames are the header names of the attributes mq.EventAttributes sets,
// built once rather than per message.
var ceNames = func() map[string]string {
	m := map[string]string{}
	for _, a := range []string{mq.AttrSpecVersion, mq.AttrID, mq.AttrSource, mq.AttrType, mq.AttrTime,
		mq.AttrPartitionKey, mq.AttrTraceParent, mq.AttrTraceState, mq.AttrDataContentType} {
		m[a] = cePrefix + a
	}
	return m
}()

// eventHeaders sets h to msg's CloudEvents attributes, as the NATS protocol
// binding's binary mode asks: every attribute, datacontenttype included, is
// a "ce-" header whose value is percent-encoded. The user's headers are
// headers of their own, their values as strings.
func eventHeaders(h natsgo.Header, msg *message.Message, source string, now time.Time) {
	for k, v := range msg.Header {
		// The bus refuses such headers at Publish (mq.CheckHeader); a row
		// stored in the envelope format before the switch may still hold
		// one. Left out, or sent as printed text, rather than failing the
		// row's every publish.
		if mq.CheckHeaderName(k) != nil {
			continue
		}
		h.Set(k, mq.HeaderText(v))
	}
	set := func(name, value string) {
		key, ok := ceNames[name]
		if !ok {
			key = cePrefix + name
		}
		h.Set(key, percentEncode(value))
	}
	mq.EventAttributes(msg, source, now, set)
	if msg.ContentType != "" {
		set(mq.AttrDataContentType, msg.ContentType)
	}
}

// transportHeader reports whether a header (lower-cased name) belongs to
// NATS, JetStream or this package rather than to the message.
func transportHeader(lk string) bool {
	switch lk {
	case "content-type", "status", "description":
		return true
	}
	return strings.HasPrefix(lk, "nats-") || strings.HasPrefix(lk, "final-")
}

// lookup returns the first value of header name, matched without regard
// to case (NATS header names are case-insensitive; nats.go's Get is not).
func lookup(h natsgo.Header, name string) (string, bool) {
	if vs, ok := h[name]; ok && len(vs) > 0 {
		return vs[0], true
	}
	for k, vs := range h {
		if len(vs) > 0 && strings.EqualFold(k, name) {
			return vs[0], true
		}
	}
	return "", false
}

// decode returns the message of a NATS message in either wire format: a
// CloudEvent when it has a ce-specversion header, else final's envelope
// when its Content-Type says so or is missing; anything else is refused.
// Every error wraps message.ErrDecode.
func decode(h natsgo.Header, data []byte) (*message.Message, error) {
	if _, ok := lookup(h, cePrefix+mq.AttrSpecVersion); ok {
		return decodeEvent(h, data)
	}
	ct, _ := lookup(h, headerContentType)
	if ct == "" || ct == mq.EnvelopeContentType {
		return message.Unmarshal(data)
	}
	return nil, fmt.Errorf("%w: neither a CloudEvent (no %s%s header) nor final's envelope (Content-Type %q)",
		message.ErrDecode, cePrefix, mq.AttrSpecVersion, ct)
}

// decodeEvent reads a CloudEvent in binary mode: the ce- headers are the
// attributes, the headers of NATS, JetStream and this package are left
// out, and the rest are the user's, as strings.
func decodeEvent(h natsgo.Header, data []byte) (*message.Message, error) {
	e := mq.Event{Attrs: make(map[string]string, 8), Header: message.Header{}, Data: data}
	for k, vs := range h {
		if len(vs) == 0 {
			continue
		}
		lk := strings.ToLower(k)
		switch {
		case strings.HasPrefix(lk, cePrefix):
			v, err := percentDecode(vs[0])
			if err != nil {
				return nil, fmt.Errorf("%w: header %q: %v", message.ErrDecode, k, err)
			}
			e.Attrs[lk[len(cePrefix):]] = v
		case transportHeader(lk):
		default:
			e.Header[k] = vs[0]
		}
	}
	return e.Message()
}
