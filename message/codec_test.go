package message_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/finalbus/final/message"
)

func sample() *message.Message {
	m := message.New("order.created", make([]byte, 256))
	m.Key = "customer-42"
	m.Header.Set("trace-id", "4bf92f3577b34da6a3ce929d0e0e4736")
	return m
}

func TestRoundTrip(t *testing.T) {
	m := sample()
	b, err := message.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := message.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.UUID != m.UUID || got.Topic != m.Topic || got.Key != m.Key || len(got.Payload) != 256 ||
		got.Header.GetString("trace-id") != m.Header.GetString("trace-id") || !got.Policy.Durable {
		t.Fatalf("round trip changed the message: %+v", got)
	}
}

func TestUnmarshalRejectsGarbage(t *testing.T) {
	nilTime := []byte{0x83, 0xa4, 'U', 'U', 'I', 'D', 0xa1, 'u', 0xa5, 'T', 'o', 'p', 'i', 'c', 0xa1, 't', 0xa4, 'T', 'i', 'm', 'e', 0xc0}
	for _, b := range [][]byte{nil, {}, []byte("not msgpack"), {0xc1}, {0x80}, {0x81, 0xa4, 'U', 'U', 'I', 'D', 0xc0}, nilTime} {
		if _, err := message.Unmarshal(b); !errors.Is(err, message.ErrDecode) {
			t.Errorf("Unmarshal(%x) = %v, want ErrDecode", b, err)
		}
	}
}

// BenchmarkMarshal is the cost of encoding an outbox record (paid once per
// message: the stored bytes are also the wire body).
func BenchmarkMarshal(b *testing.B) {
	m := sample()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := message.Marshal(m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnmarshal is the cost of decoding a delivery or a claimed row.
func BenchmarkUnmarshal(b *testing.B) {
	data, _ := message.Marshal(sample())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := message.Unmarshal(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnmarshalShared is the relay's decode of a claimed row: a
// message with no header, its payload not copied.
func BenchmarkUnmarshalShared(b *testing.B) {
	data, _ := message.Marshal(message.New("order.created", make([]byte, 256)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := message.UnmarshalShared(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNew is the cost of building a message, UUIDv7 included.
func BenchmarkNew(b *testing.B) {
	payload := make([]byte, 256)
	b.ReportAllocs()
	for b.Loop() {
		_ = message.New("order.created", payload)
	}
}

// UnmarshalShared's payload is the input's bytes, not a copy, and an
// append to it does not write over the input; Unmarshal's is a copy.
func TestUnmarshalSharedPayloadIsASliceOfTheInput(t *testing.T) {
	m := message.New("t", []byte("payload"))
	data, err := message.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := message.UnmarshalShared(data)
	if err != nil {
		t.Fatal(err)
	}
	copied, err := message.Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(data, []byte("payload"))
	data[at] = 'P'
	if string(shared.Payload) != "Payload" {
		t.Errorf("shared payload %q, want the input's bytes (%q)", shared.Payload, "Payload")
	}
	if string(copied.Payload) != "payload" {
		t.Errorf("copied payload %q changed with the input", copied.Payload)
	}
	before := bytes.Clone(data)
	_ = append(shared.Payload, "more"...)
	if !bytes.Equal(data, before) {
		t.Error("an append to the shared payload wrote over the input")
	}
}
