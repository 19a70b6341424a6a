package mq_test

import (
	"errors"
	"testing"
	"time"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

func attrs(m *message.Message, source string, now time.Time) map[string]string {
	out := map[string]string{}
	mq.EventAttributes(m, source, now, func(name, value string) { out[name] = value })
	return out
}

// A message's attributes, and back: the metadata survives, the policy does
// not travel.
func TestEventRoundTrip(t *testing.T) {
	m := message.New("order.created", []byte(`{"id":1}`), message.WithKey("o-1"), message.WithContentType("application/json"), message.WithTTL(time.Minute))
	m.Header.Set("tenant", "acme")
	m.Header.Set(mq.AttrTraceParent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	a := attrs(m, "order_svc", time.Time{})
	want := map[string]string{
		"specversion": "1.0", "id": m.UUID, "source": "order_svc", "type": "order.created",
		"time": m.Time.Format(time.RFC3339Nano), "partitionkey": "o-1",
		"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	}
	if len(a) != len(want) {
		t.Fatalf("attributes = %v, want %v", a, want)
	}
	for k, v := range want {
		if a[k] != v {
			t.Fatalf("attribute %s = %q, want %q", k, a[k], v)
		}
	}
	a[mq.AttrDataContentType] = m.ContentType
	got, err := mq.Event{Attrs: a, Header: message.Header{"tenant": "acme"}, Data: m.Payload}.Message()
	if err != nil {
		t.Fatal(err)
	}
	if got.UUID != m.UUID || got.Topic != m.Topic || got.Key != m.Key || got.ContentType != m.ContentType ||
		got.Source != "order_svc" || !got.Time.Equal(m.Time) || string(got.Payload) != string(m.Payload) {
		t.Fatalf("message = %+v, want the fields of %+v", got, m)
	}
	if got.Header.GetString("tenant") != "acme" || got.Header.GetString(mq.AttrTraceParent) == "" {
		t.Fatalf("header = %v", got.Header)
	}
	if got.Policy.TTL != 0 {
		t.Fatalf("the producer's policy travelled: %+v", got.Policy)
	}
}

// A message stored before it had a Time is stamped with the time it is sent.
func TestEventTimeOfAnOldMessage(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 5000, time.UTC)
	if got := attrs(&message.Message{UUID: "u", Topic: "t"}, "s", now)["time"]; got != "2026-11-30T12:00:00.000005Z" {
		t.Fatalf("time = %q", got)
	}
}

func TestEventRefusesMalformed(t *testing.T) {
	ok := map[string]string{"specversion": "1.0", "id": "u1", "source": "/svc", "type": "t"}
	with := func(k, v string) map[string]string {
		a := map[string]string{}
		for k, v := range ok {
			a[k] = v
		}
		if v == "\x00delete" {
			delete(a, k)
		} else {
			a[k] = v
		}
		return a
	}
	if _, err := (mq.Event{Attrs: ok}).Message(); err != nil {
		t.Fatalf("a minimal event: %v", err)
	}
	for name, a := range map[string]map[string]string{
		"no specversion":   with("specversion", "\x00delete"),
		"specversion 0.3":  with("specversion", "0.3"),
		"no id":            with("id", "\x00delete"),
		"empty id":         with("id", ""),
		"no source":        with("source", "\x00delete"),
		"source not a URI": with("source", "http://[::1"),
		"no type":          with("type", "\x00delete"),
		"bad time":         with("time", "yesterday"),
		"control char":     with("id", "u\x01"),
	} {
		if _, err := (mq.Event{Attrs: a}).Message(); !errors.Is(err, message.ErrDecode) {
			t.Errorf("%s: err = %v, want message.ErrDecode", name, err)
		}
	}
}

func TestCheckHeader(t *testing.T) {
	for _, h := range []message.Header{
		{"tenant": "acme", "n": 1, "big": uint64(1 << 63), "f": 1.5, "ok": true, "raw": []byte{0}},
		{},
	} {
		if err := mq.CheckHeader(h); err != nil {
			t.Errorf("CheckHeader(%v) = %v", h, err)
		}
	}
	for _, h := range []message.Header{
		{"cloudEvents:id": "x"}, {"CE-id": "x"}, {"ce_type": "x"}, {"cloudevents_source": "x"},
		{"when": time.Now()}, {"nested": map[string]any{"a": 1}}, {"": "x"},
		{"two words": "x"}, {"Nats-Msg-Id": "x"}, {"Final-TTL": "x"}, {"content-type": "x"}, {"ok": "line\nbreak"},
	} {
		if err := mq.CheckHeader(h); err == nil {
			t.Errorf("CheckHeader(%v) = nil, want an error", h)
		}
	}
}

func TestHeaderText(t *testing.T) {
	for _, c := range []struct {
		v    any
		want string
	}{
		{"acme", "acme"}, {true, "true"}, {int8(-3), "-3"}, {uint64(1 << 63), "9223372036854775808"},
		{1.5, "1.5"}, {float32(0.25), "0.25"}, {[]byte{0xff, 0}, "/wA="}, {[]string{"a"}, "[a]"},
		{"line\r\nbreak", "line  break"}, {"del\x7f", "del "},
	} {
		if got := mq.HeaderText(c.v); got != c.want {
			t.Errorf("HeaderText(%#v) = %q, want %q", c.v, got, c.want)
		}
	}
}
