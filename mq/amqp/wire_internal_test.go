package amqp

import (
	"bytes"
	"errors"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// delivered is what a consumer receives for pub.
func delivered(pub amqp.Publishing) *amqp.Delivery {
	return &amqp.Delivery{Headers: pub.Headers, ContentType: pub.ContentType, MessageId: pub.MessageId, Body: pub.Body}
}

// In the CloudEvents format the body is the payload, byte for byte, the
// attributes are cloudEvents: headers and the user's headers plain ones;
// decoding gives the message back, without its producer's policy.
func TestEventPublishingRoundTrip(t *testing.T) {
	m := message.New("order.created", []byte{0xff, 0, '{'}, message.WithKey("o-1"), message.WithContentType("application/octet-stream"), message.WithTTL(time.Minute))
	m.Header.Set("tenant", "acme")
	m.Header.Set("n", 7)
	m.Header.Set("big", uint64(1<<63))
	pub := amqp.Publishing{MessageId: m.UUID, Timestamp: time.Now()}
	eventPublishing(&pub, m, "order_svc")

	if !bytes.Equal(pub.Body, m.Payload) || pub.ContentType != "application/octet-stream" {
		t.Fatalf("body %x, content type %q", pub.Body, pub.ContentType)
	}
	for k, want := range map[string]any{
		"cloudEvents:specversion": "1.0", "cloudEvents:id": m.UUID, "cloudEvents:type": "order.created",
		"cloudEvents:source": "order_svc", "cloudEvents:partitionkey": "o-1",
		"tenant": "acme", "n": int64(7), "big": "9223372036854775808",
	} {
		if pub.Headers[k] != want {
			t.Errorf("header %s = %#v, want %#v", k, pub.Headers[k], want)
		}
	}
	if err := pub.Headers.Validate(); err != nil {
		t.Fatalf("headers AMQP cannot carry: %v", err)
	}
	got, err := decode(delivered(pub))
	if err != nil {
		t.Fatal(err)
	}
	if got.UUID != m.UUID || got.Topic != m.Topic || got.Key != "o-1" || got.Source != "order_svc" ||
		got.ContentType != m.ContentType || !got.Time.Equal(m.Time) || !bytes.Equal(got.Payload, m.Payload) {
		t.Fatalf("decoded %+v", got)
	}
	if got.Header["tenant"] != "acme" || got.Header["n"] != int64(7) || len(got.Header) != 3 {
		t.Fatalf("decoded header %v", got.Header)
	}
	if got.Policy.TTL != 0 {
		t.Fatalf("the policy travelled: %+v", got.Policy)
	}
}

// Consumers read both formats, told apart by the headers and the content
// type, never by the body.
func TestDecodeTellsTheFormatsApart(t *testing.T) {
	m := message.New("t", []byte("p"))
	env, err := message.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range []string{mq.EnvelopeContentType, ""} {
		got, err := decode(&amqp.Delivery{ContentType: ct, Body: env})
		if err != nil || got.UUID != m.UUID {
			t.Fatalf("envelope with content type %q: %v, %v", ct, got, err)
		}
	}
	// A CloudEvent whose payload is msgpack is still a CloudEvent.
	ev := &amqp.Delivery{ContentType: mq.EnvelopeContentType, Body: env, Headers: amqp.Table{
		"cloudEvents_specversion": "1.0", "cloudEvents_id": "e1", "cloudEvents_source": "https://example.com/x",
		"cloudEvents_type": "t", "cloudEvents_time": time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		"x-death": []any{}, "x-delivery-count": int64(1), HeaderDeadReason: "r",
	}}
	got, err := decode(ev)
	if err != nil {
		t.Fatal(err)
	}
	if got.UUID != "e1" || !bytes.Equal(got.Payload, env) || got.Time.Year() != 2026 || len(got.Header) != 0 {
		t.Fatalf("cloudEvents_ event decoded as %+v", got)
	}
	if _, err := decode(&amqp.Delivery{ContentType: "application/json", Body: []byte(`{}`)}); !errors.Is(err, message.ErrDecode) {
		t.Fatalf("a plain JSON message: %v, want message.ErrDecode", err)
	}
}

// The decoder of deliveries never panics, and what it accepts is a whole
// message.
func FuzzDecode(f *testing.F) {
	f.Add("1.0", "id", "src", "type", "2026-01-02T03:04:05Z", "application/json", "k", "v", []byte("{}"), false)
	f.Add("1.0", "", "", "", "", "", "", "", []byte{}, true)
	f.Fuzz(func(t *testing.T, spec, id, source, typ, tm, ct, hk, hv string, body []byte, underscore bool) {
		prefix := "cloudEvents:"
		if underscore {
			prefix = "cloudEvents_"
		}
		h := amqp.Table{prefix + "specversion": spec, prefix + "id": id, prefix + "source": source, prefix + "type": typ, hk: hv}
		if tm != "" {
			h[prefix+"time"] = tm
		}
		m, err := decode(&amqp.Delivery{Headers: h, ContentType: ct, Body: body})
		if err != nil {
			if !errors.Is(err, message.ErrDecode) {
				t.Fatalf("error %v does not wrap message.ErrDecode", err)
			}
			return
		}
		if m.UUID == "" || m.Topic == "" || m.Header == nil || m.Policy == nil || !bytes.Equal(m.Payload, body) {
			t.Fatalf("accepted an incomplete message: %+v", m)
		}
	})
}

// A row stored in the envelope format before the switch may hold header
// values the CloudEvents format refuses at Publish; they are sent as
// strings, so the row is not stuck failing every publish.
func TestEventPublishingOfAnOldRowsHeader(t *testing.T) {
	m := message.New("t", []byte("p"))
	m.Header = message.Header{"list": []any{int8(1), "a"}, "map": map[string]any{"k": "v"}, "at": time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), "none": nil}
	pub := amqp.Publishing{Timestamp: time.Now()}
	eventPublishing(&pub, m, "svc")
	if err := pub.Headers.Validate(); err != nil {
		t.Fatalf("headers AMQP cannot carry: %v", err)
	}
	if pub.Headers["at"] != "2026-01-02T03:04:05.000000006Z" || pub.Headers["list"] != "[1 a]" {
		t.Fatalf("headers %v", pub.Headers)
	}
}
