package amqp

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// ceSendPrefix names the CloudEvents attributes among a message's AMQP
// application properties (headers), as the AMQP protocol binding 1.0.2
// does; its later revisions prefer "cloudEvents_", which receivers read as
// well (ceReadPrefixes).
const ceSendPrefix = "cloudEvents:"

var ceReadPrefixes = []string{"cloudEvents:", "cloudEvents_"}

// ceNames are the header names of the attributes mq.EventAttributes sets,
// built once rather than per message.
var ceNames = func() map[string]string {
	m := map[string]string{}
	for _, a := range []string{mq.AttrSpecVersion, mq.AttrID, mq.AttrSource, mq.AttrType, mq.AttrTime,
		mq.AttrPartitionKey, mq.AttrTraceParent, mq.AttrTraceState} {
		m[a] = ceSendPrefix + a
	}
	return m
}()

// eventPublishing sets pub to msg as a CloudEvent in binary content mode
// from source: the body is the payload, the attributes are headers with
// ceSendPrefix, datacontenttype is the content type property, and the id
// is the message id property too. The user's headers are headers of their
// own, unprefixed.
func eventPublishing(pub *amqp.Publishing, msg *message.Message, source string) {
	headers := make(amqp.Table, len(msg.Header)+8)
	for k, v := range msg.Header {
		headers[k] = amqpValue(v)
	}
	mq.EventAttributes(msg, source, pub.Timestamp, func(name, value string) {
		key, ok := ceNames[name]
		if !ok {
			key = ceSendPrefix + name
		}
		headers[key] = value
	})
	pub.Headers = headers
	pub.ContentType = msg.ContentType
	pub.Body = msg.Payload
}

// amqpValue converts a header value to a type AMQP tables carry: every
// integer becomes int64 (a uint64 beyond it, its decimal string), so that
// a value looks the same whether the message went by the fast path or was
// read back from the outbox (msgpack decodes integers to the smallest
// type); the other kinds mq.CheckHeader allows pass unchanged, and any
// other value becomes a string.
func amqpValue(v any) any {
	switch x := v.(type) {
	case int:
		return int64(x)
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case uint:
		return uintValue(uint64(x))
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case uint64:
		return uintValue(x)
	case float32:
		return float64(x)
	case nil, bool, float64, int64, string, []byte:
		return v
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano) // an AMQP timestamp keeps whole seconds only
	}
	// A row stored before the switch to CloudEvents, or by the ancestor,
	// may hold a header value Publish now refuses (a list, a map): sent as
	// its printed form rather than failing the row's every publish.
	return fmt.Sprint(v)
}

func uintValue(x uint64) any {
	if x > math.MaxInt64 {
		return strconv.FormatUint(x, 10)
	}
	return int64(x)
}

// brokerHeaders are headers RabbitMQ or this package set on a delivery;
// they are not the user's.
func brokerHeader(name string) bool {
	switch name {
	case "x-death", "x-delivery-count", HeaderDeadReason, HeaderDeadAt, HeaderDeadQueue:
		return true
	}
	return strings.HasPrefix(name, "x-first-death-") || strings.HasPrefix(name, "x-last-death-")
}

// decode returns the message of a delivery in either wire format: a
// CloudEvent when its headers carry a specversion attribute, else final's
// envelope when its content type says so (or is empty, as it can be for
// messages of the ancestor library); anything else is refused.
func decode(d *amqp.Delivery) (*message.Message, error) {
	if prefix, ok := eventPrefix(d.Headers); ok {
		return decodeEvent(d, prefix)
	}
	if d.ContentType == mq.EnvelopeContentType || d.ContentType == "" {
		return message.Unmarshal(d.Body)
	}
	return nil, fmt.Errorf("%w: neither a CloudEvent (no %sspecversion header) nor final's envelope (content type %q)",
		message.ErrDecode, ceSendPrefix, d.ContentType)
}

// eventPrefix returns the CloudEvents prefix the headers use.
func eventPrefix(h amqp.Table) (string, bool) {
	for _, p := range ceReadPrefixes {
		if _, ok := h[p+mq.AttrSpecVersion]; ok {
			return p, true
		}
	}
	return "", false
}

func decodeEvent(d *amqp.Delivery, prefix string) (*message.Message, error) {
	e := mq.Event{Attrs: make(map[string]string, 8), Header: message.Header{}, Data: d.Body}
	for k, v := range d.Headers {
		switch {
		case strings.HasPrefix(k, prefix):
			e.Attrs[k[len(prefix):]] = canonical(v)
		case brokerHeader(k):
		default:
			e.Header[k] = v
		}
	}
	if d.ContentType != "" {
		e.Attrs[mq.AttrDataContentType] = d.ContentType
	}
	return e.Message()
}

// canonical is an AMQP value's CloudEvents canonical string: an AMQP
// timestamp as RFC 3339, binary as base64.
func canonical(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case []byte:
		return base64.StdEncoding.EncodeToString(x)
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprint(v)
}
