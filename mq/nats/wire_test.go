package nats

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

func TestPercentEncoding(t *testing.T) {
	for _, c := range []struct{ in, out string }{
		{"plain-ascii_1.0:/?#[]@!$&'()*+,;=~", "plain-ascii_1.0:/?#[]@!$&'()*+,;=~"},
		{"Euro € 😀", "Euro%20%E2%82%AC%20%F0%9F%98%80"}, // the binding's example
		{`say "100%"`, "say%20%22100%25%22"},
		{"tab\tnl\ndel\x7f", "tab%09nl%0Adel%7F"},
		{"", ""},
	} {
		if got := percentEncode(c.in); got != c.out {
			t.Errorf("percentEncode(%q) = %q, want %q", c.in, got, c.out)
		}
		back, err := percentDecode(c.out)
		if err != nil || back != c.in {
			t.Errorf("percentDecode(%q) = %q, %v; want %q", c.out, back, err, c.in)
		}
	}
}

func TestPercentDecoding(t *testing.T) {
	for in, want := range map[string]string{
		"%e2%82%ac":             "€",   // lower-case hex
		"%41bc":                 "Abc", // encoded without need
		`"quoted \"x\" 100%25"`: `quoted "x" 100%`,
		`"a%20b"`:               "a b", // unquoted first, then decoded
	} {
		got, err := percentDecode(in)
		if err != nil || got != want {
			t.Errorf("percentDecode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"%C0%A0", "%", "%4", "%zz", "%FF", `"open`, `"a"b"`, `"\"`} {
		if got, err := percentDecode(in); err == nil {
			t.Errorf("percentDecode(%q) = %q, want an error", in, got)
		}
	}
}

// received is what a consumer gets of a published message.
func received(m *natsgo.Msg) (natsgo.Header, []byte) { return m.Header, m.Data }

func TestCloudEventsRoundTrip(t *testing.T) {
	m := message.New("order.created", []byte{0xff, 0, '{'}, message.WithKey("o 1/é"),
		message.WithContentType("application/json; charset=utf-8"), message.WithTTL(time.Minute))
	m.Header.Set("tenant", "acme")
	m.Header.Set("n", 7)
	m.Header.Set("big", uint64(1<<63))
	m.Header.Set("ok", true)
	m.Header.Set("f", 1.5)
	m.Header.Set("raw", []byte{1, 2})
	m.Header.Set(mq.AttrTraceParent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	nm := encode(m, nil, mq.CloudEvents, "order_svc", time.Now())
	if !bytes.Equal(nm.Data, m.Payload) {
		t.Fatalf("body %x", nm.Data)
	}
	for k, want := range map[string]string{
		"ce-specversion": "1.0", "ce-id": m.UUID, "ce-type": "order.created", "ce-source": "order_svc",
		"ce-partitionkey": "o%201/%C3%A9", "ce-datacontenttype": "application/json;%20charset=utf-8",
		"ce-traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"Nats-Msg-Id":    m.UUID, HeaderTTL: "60000",
		"tenant": "acme", "n": "7", "big": "9223372036854775808", "ok": "true", "f": "1.5", "raw": "AQI=",
	} {
		if got := nm.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if _, ok := nm.Header[headerContentType]; ok {
		t.Error("Content-Type set: the binding reads it as the structured mode's")
	}
	got, err := decode(received(nm))
	if err != nil {
		t.Fatal(err)
	}
	if got.UUID != m.UUID || got.Topic != m.Topic || got.Key != m.Key || got.Source != "order_svc" ||
		got.ContentType != m.ContentType || !got.Time.Equal(m.Time) || !bytes.Equal(got.Payload, m.Payload) {
		t.Fatalf("decoded %+v", got)
	}
	if got.Header["tenant"] != "acme" || got.Header["n"] != "7" || got.Header["raw"] != "AQI=" ||
		got.Header[mq.AttrTraceParent] != m.Header[mq.AttrTraceParent] || len(got.Header) != 7 {
		t.Fatalf("decoded header %v", got.Header)
	}
	if got.Policy.TTL != 0 {
		t.Fatalf("the policy travelled: %+v", got.Policy)
	}
}

// Another producer's CloudEvent: header names in any case, a quoted value.
func TestDecodeForeignCloudEvent(t *testing.T) {
	h := natsgo.Header{
		"Ce-Specversion": {"1.0"}, "CE-ID": {"id-1"}, "ce-source": {`"/my source"`}, "ce-type": {"x.y"},
		"ce-time": {"2024-01-02T03:04:05Z"}, "ce-datacontenttype": {"text/plain"}, "ce-myext": {"v%25"},
		"Nats-Msg-Id": {"id-1"}, "user": {"u"},
	}
	m, err := decode(h, []byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	if m.UUID != "id-1" || m.Source != "/my source" || m.Topic != "x.y" || m.ContentType != "text/plain" ||
		m.Header["myext"] != "v%" || m.Header["user"] != "u" || len(m.Header) != 2 || string(m.Payload) != "hi" {
		t.Fatalf("decoded %+v", m)
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	m := message.New("a.b", []byte("p"), message.WithKey("k"))
	m.Header.Set("n", 7)
	body, err := message.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	nm := encode(m, body, mq.Envelope, "svc", time.Now())
	if nm.Header.Get("Content-Type") != mq.EnvelopeContentType || nm.Header.Get("Nats-Msg-Id") != m.UUID ||
		!bytes.Equal(nm.Data, body) || nm.Header.Get(HeaderTTL) != "" {
		t.Fatalf("encoded %+v", nm)
	}
	got, err := decode(received(nm))
	if err != nil || got.UUID != m.UUID || got.Key != "k" {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	// Without a Content-Type, as the ancestor library published.
	if got, err := decode(natsgo.Header{}, body); err != nil || got.UUID != m.UUID {
		t.Fatalf("decoded %+v, %v", got, err)
	}
}

func TestDecodeRefuses(t *testing.T) {
	for name, h := range map[string]natsgo.Header{
		"other content type":   {"Content-Type": {"application/json"}},
		"structured mode":      {"Content-Type": {"application/cloudevents+json"}},
		"bad percent-encoding": {"ce-specversion": {"1.0"}, "ce-id": {"%zz"}, "ce-source": {"s"}, "ce-type": {"t"}},
		"event without id":     {"ce-specversion": {"1.0"}, "ce-source": {"s"}, "ce-type": {"t"}},
		"not msgpack":          {"Content-Type": {mq.EnvelopeContentType}},
	} {
		if _, err := decode(h, []byte("{}")); !errors.Is(err, message.ErrDecode) {
			t.Errorf("%s: err %v, want message.ErrDecode", name, err)
		}
	}
}

// Headers that cannot travel as NATS headers are refused at Publish by
// mq.CheckHeader; a row stored before the switch that holds one is still
// sent, without that header or with its value printed, never with a
// header the value could inject.
func TestHeadersThatCannotTravel(t *testing.T) {
	for name, h := range map[string]message.Header{
		"space in name":    {"a b": "x"},
		"colon in name":    {"a:b": "x"},
		"nats prefix":      {"Nats-Expected-Stream": "x"},
		"final prefix":     {"final-ttl": "1"},
		"content type":     {"content-type": "text/plain"},
		"status":           {"Status": "503"},
		"ce prefix":        {"CE-id": "x"},
		"newline in value": {"a": "x\r\nNats-Msg-Id: y"},
		"unsupported type": {"a": []string{"x"}},
		"empty name":       {"": "x"},
		"NUL in value":     {"b": "\x00"},
	} {
		if err := mq.CheckHeader(h); err == nil {
			t.Errorf("%s: mq.CheckHeader accepted it", name)
		}
		m := message.New("t", nil)
		m.Header = h
		got := encode(m, nil, mq.CloudEvents, "svc", time.Now())
		if got.Header.Get(jetstream.MsgIDHeader) != m.UUID || got.Header.Get("Status") != "" || got.Header.Get("Nats-Expected-Stream") != "" {
			t.Errorf("%s: headers %v", name, got.Header)
		}
		for k, vs := range got.Header {
			for _, v := range vs {
				if strings.ContainsAny(k+v, "\r\n\x00") {
					t.Errorf("%s: header %q: %q", name, k, v)
				}
			}
		}
	}
}
