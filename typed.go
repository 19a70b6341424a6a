package final

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/finalbus/final/internal/msgpackcheck"
	"github.com/finalbus/final/message"
)

// Codec turns typed values into payloads and back.
type Codec interface {
	Name() string // the media type, recorded as the message's ContentType
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// HeaderContentType is the header in which earlier versions recorded the
// codec of a typed payload; PublishValue now sets Message.ContentType
// instead (the header is a transport's own in the CloudEvents format).
//
// Deprecated: read Message.ContentType.
const HeaderContentType = "content-type"

// MsgpackCodec encodes with msgpack; it is the default. It refuses to
// decode a payload that claims more bytes or entries than it holds, or
// nests values more than 256 deep.
var MsgpackCodec Codec = msgpackCodec{}

// JSONCodec encodes with encoding/json.
var JSONCodec Codec = jsonCodec{}

type msgpackCodec struct{}

func (msgpackCodec) Name() string                  { return "application/x-msgpack" }
func (msgpackCodec) Marshal(v any) ([]byte, error) { return msgpack.Marshal(v) }

// Unmarshal refuses input that claims more than it holds before msgpack
// sees it: msgpack allocates what a length claims before reading it, so a
// hostile payload of a few bytes could otherwise exhaust memory.
func (msgpackCodec) Unmarshal(data []byte, v any) error {
	if !msgpackcheck.Plausible(data) {
		return errImplausibleMsgpack
	}
	return msgpack.Unmarshal(data, v)
}

var errImplausibleMsgpack = errors.New("msgpack: a length beyond the end of the input, or values nested more than 256 deep")

type jsonCodec struct{}

func (jsonCodec) Name() string                       { return "application/json" }
func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// Publisher is what both *Bus and *TxBus are: PublishValue takes either.
type Publisher interface {
	PublishMessageContext(ctx context.Context, m *message.Message) error
}

// PublishValue encodes v with codec (nil: MsgpackCodec) and publishes it to
// topic through p, a *Bus or a *TxBus.
func PublishValue[T any](ctx context.Context, p Publisher, codec Codec, topic string, v T, opts ...message.PolicyOption) error {
	if codec == nil {
		codec = MsgpackCodec
	}
	payload, err := codec.Marshal(v)
	if err != nil {
		return fmt.Errorf("final: encode %T: %w", v, err)
	}
	m := message.New(topic, payload, opts...)
	m.ContentType = codec.Name()
	return p.PublishMessageContext(ctx, m)
}

// Typed adapts a handler of decoded values: the payload is decoded into a T
// with codec (nil: MsgpackCodec) and h gets the delivery's context. A
// payload that does not decode is dead-lettered at once, with the reason,
// and never retried.
func Typed[T any](codec Codec, h func(ctx context.Context, v T) error) HandlerFunc {
	return TypedContext(codec, func(c *Context, v T) error { return h(c.Context(), v) })
}

// TypedContext is Typed for handlers that want the whole Context.
func TypedContext[T any](codec Codec, h func(c *Context, v T) error) HandlerFunc {
	if codec == nil {
		codec = MsgpackCodec
	}
	return func(c *Context) error {
		var v T
		if err := codec.Unmarshal(c.Message.Payload, &v); err != nil {
			return Permanent(fmt.Errorf("decode %s payload into %T: %w", codec.Name(), v, err))
		}
		return h(c, v)
	}
}
