package message_test

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/finalbus/final/message"
)

// The codec writes and reads the envelope field by field; msgpack's
// reflection over the struct is the reference it must match, byte for byte
// when encoding and value for value when decoding (Message has no msgpack
// methods, so msgpack.Marshal and msgpack.Unmarshal of it are the
// reflection).

// reflectUnmarshal is Unmarshal as it was, with msgpack's reflection (and
// a panic of the reflection's taken as an error).
func reflectUnmarshal(data []byte) (m *message.Message, err error) {
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	m = &message.Message{}
	if err := msgpack.Unmarshal(data, m); err != nil {
		return nil, err
	}
	if m.UUID == "" || m.Topic == "" {
		return nil, errors.New("missing uuid or topic")
	}
	if m.Header == nil {
		m.Header = message.Header{}
	}
	if m.Policy == nil {
		m.Policy = message.DefaultPolicy()
	}
	return m, nil
}

// envelopes are messages that exercise every field and every size class
// of msgpack's strings and byte strings; none has more than one header,
// whose order msgpack does not fix.
func envelopes() map[string]*message.Message {
	full := message.New("order.created", []byte(`{"id":1}`), message.WithKey("k-1"), message.WithTTL(time.Minute),
		message.WithDelay(2*time.Second), message.WithContentType("application/json"))
	full.Source = "order_svc"
	full.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	bare := &message.Message{UUID: "u", Topic: "t"}
	numbers := message.New("n", nil)
	numbers.Header.Set("n", int64(-1)<<40)
	long := message.New(strings.Repeat("t", 70000), make([]byte, 70000), message.WithKey(strings.Repeat("k", 300)))
	long.Header.Set("bytes", []byte{1, 2, 3})
	emptyPayload := message.New("e", []byte{})
	emptyPayload.Policy = &message.Policy{Key: "policy-only", ContentType: "not/encoded"}
	utc := message.New("time", nil)
	utc.Time = time.Date(2026, 12, 1, 3, 4, 5, 6, time.UTC)
	secs := message.New("time", nil)
	secs.Time = time.Unix(1700000000, 0)
	return map[string]*message.Message{
		"full": full, "bare": bare, "numbers": numbers, "long": long, "empty payload": emptyPayload,
		"nanoseconds": utc, "whole seconds": secs, "new": message.New("x", []byte("y")),
	}
}

func TestMarshalMatchesReflection(t *testing.T) {
	for name, m := range envelopes() {
		t.Run(name, func(t *testing.T) {
			got, err := message.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			want, err := msgpack.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("Marshal differs from msgpack's reflection:\n got %x\nwant %x", got[:min(len(got), 200)], want[:min(len(want), 200)])
			}
		})
	}
}

// Several headers come out in map order: the two encodings then decode
// to the same message.
func TestMarshalManyHeadersDecodesAlike(t *testing.T) {
	m := message.New("h", []byte("p"))
	for i, v := range []any{"s", int64(7), true, 1.5, []byte{9}, nil, uint8(3)} {
		m.Header.Set(string(rune('a'+i)), v)
	}
	got, err := message.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := msgpack.Marshal(m)
	a, errA := reflectUnmarshal(got)
	b, errB := reflectUnmarshal(want)
	if errA != nil || errB != nil || !reflect.DeepEqual(a, b) {
		t.Fatalf("decoded differently: %+v (%v) vs %+v (%v)", a, errA, b, errB)
	}
}

func encoded(t testing.TB, v any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// legacy is a row of the ancestor library's, with fields this one does
// not have.
func legacy(t testing.TB) []byte {
	return encoded(t, map[string]any{
		"UUID": "legacy-1", "Topic": "orders.created", "Handler": "h", "SvcName": "s",
		"Header": map[string]any{"record_id": 7, "list": []any{1, "b", map[string]any{"x": nil}}}, "Payload": []byte("old"),
		"Policy": map[string]any{"Confirm": true, "Durable": true, "TTL": 0, "Delay": 5, "Future": "skipped"},
	})
}

// uncommon are encodings Marshal never wrote, some of which msgpack's
// reflection read (or panicked on): Unmarshal refuses them all.
func uncommon(t testing.TB) [][]byte {
	enc := func(v any) []byte { return encoded(t, v) }
	return [][]byte{
		enc(map[string]any{"UUID": []byte("bin-uuid"), "Topic": "t"}),                // a string as binary
		enc(map[string]any{"UUID": "u", "Topic": "t", "Payload": "a string"}),        // bytes as a string
		enc(map[string]any{"UUID": "u", "Topic": "t", "Policy": []any{true, false}}), // a struct as an array
		enc(map[string]any{"UUID": "u", "Topic": "t", "Policy": map[string]any{"TTL": 1.5, "Confirm": nil}}),
		enc(map[string]any{"UUID": "u", "Topic": "t", "Time": nil}),                       // the reflection panicked
		enc(map[string]any{"UUID": "u", "Topic": "t", "Time": []any{int64(1), int64(2)}}), // legacy time
		enc(map[string]any{"UUID": "u", "Topic": "t", "Key": 5}),
		enc(map[string]any{"UUID": nil, "Topic": "t"}),
		enc(map[string]any{"UUID": "u", "Topic": "t", "Header": []any{"x"}}),
		enc([]any{"u", "t", "", nil, nil, nil, "", time.Time{}, ""}), // the message as an array
		enc(map[int]any{1: "u"}),
		enc("just a string"),
		// a time extension before a map claiming 2.4 billion entries, which
		// the reflection allocated (it reads a map after an extension header)
		{0x99, 0xa1, '0', 0xa1, '0', 0xa0, 0xd4, 0x60, 0xdf, 0x90, 0xfc, 0xa1, 0x94, 0xf8, 0xfb},
		{0x83, 0xa4, 'U', 'U', 'I', 'D', 0xa1, 'u', 0xa5, 'T', 'o', 'p', 'i', 'c', 0xa1, 't', // a time as extension 13 (NodeJS's)
			0xa4, 'T', 'i', 'm', 'e', 0xd7, 0x0d, 0, 0, 0, 0, 0x60, 0, 0, 0},
		{0x82, 0xa4, 'U', 'U', 'I', 'D', 0xa1, 'u', 0xa5, 'T', 'o', 'p', 'i', 'c'}, // cut short
		{0x83, 0xa4, 'U', 'U', 'I', 'D', 0xa1, 'u', 0xa5, 'T', 'o', 'p', 'i', 'c', 0xa1, 't',
			0xa6, 'P', 'o', 'l', 'i', 'c', 'y', 0x81, 0xa3, 'T', 'T', 'L', 0xd3, 0, 0}, // an int64 cut short
		{0x81, 0xa6, 'H', 'e', 'a', 'd', 'e', 'r', 0xdf, 0xff, 0xff, 0xff, 0xff}, // a header claiming 4 billion entries
		{0x82, 0xa4, 'U', 'U', 'I', 'D', 0xc4, 1, 'u', 0xa6, 'H', 'e', 'a', 'd', 'e', 'r', 0xdd, 0xff, 0xff, 0xff, 0xff},
		nil, {}, {0xc1}, {0x80}, {0xc0}, []byte("not msgpack"),
	}
}

func TestUnmarshalRefusesWhatMarshalNeverWrote(t *testing.T) {
	for i, data := range uncommon(t) {
		if m, err := message.Unmarshal(data); !errors.Is(err, message.ErrDecode) {
			t.Errorf("input %d %x: Unmarshal = %+v, %v; want ErrDecode", i, data, m, err)
		}
	}
}

func TestUnmarshalMatchesReflection(t *testing.T) {
	repeated := []byte{0x83, 0xa4, 'U', 'U', 'I', 'D', 0xa1, 'u', 0xa4, 'U', 'U', 'I', 'D', 0xa1, 'v', 0xa5, 'T', 'o', 'p', 'i', 'c', 0xa1, 't'}
	inputs := [][]byte{legacy(t), repeated}
	for _, m := range envelopes() {
		b, err := message.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, b)
	}
	for i, data := range inputs {
		if _, err := message.Unmarshal(data); err != nil {
			t.Fatalf("input %d %x: %v", i, data, err)
		}
		sameAsReflection(t, data, i)
	}
}

func FuzzUnmarshalMatchesReflection(f *testing.F) {
	for _, b := range append(uncommon(f), legacy(f)) {
		f.Add(b)
	}
	for _, m := range envelopes() {
		if b, err := message.Marshal(m); err == nil && len(b) < 4096 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) { sameAsReflection(t, data, 0) })
}

// sameAsReflection checks that what Unmarshal decodes, msgpack's
// reflection decodes alike (on what Unmarshal refuses, the reflection may
// allocate what the input claims, or panic: it is not run).
func sameAsReflection(t *testing.T, data []byte, i int) {
	t.Helper()
	got, err := message.Unmarshal(data)
	if err != nil {
		if !errors.Is(err, message.ErrDecode) {
			t.Fatalf("input %d: error %v does not wrap ErrDecode", i, err)
		}
		if m, err := message.UnmarshalShared(data); !errors.Is(err, message.ErrDecode) {
			t.Fatalf("input %d %x: UnmarshalShared = %+v, %v where Unmarshal failed", i, data, m, err)
		}
		return
	}
	want, wantErr := reflectUnmarshal(data)
	if wantErr != nil {
		t.Fatalf("input %d %x: Unmarshal gave %+v, the reflection %v", i, data, got, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("input %d %x: Unmarshal gave\n%#v\nthe reflection\n%#v", i, data, got, want)
	}
	own := bytes.Clone(data)
	shared, err := message.UnmarshalShared(own)
	if err != nil || !reflect.DeepEqual(shared, got) {
		t.Fatalf("input %d %x: UnmarshalShared gave\n%#v, %v\nUnmarshal\n%#v", i, data, shared, err, got)
	}
	// Its payload is the input's bytes, capacity and all.
	if p := shared.Payload; len(p) > 0 {
		was := p[0]
		for j := range own {
			own[j] ^= 0xff
		}
		if p[0] != was^0xff || cap(p) != len(p) {
			t.Fatalf("input %d %x: UnmarshalShared's payload is not a slice of the input ending with it", i, data)
		}
	}
}

// A header, or an array in one, claiming millions of entries in a few
// bytes is refused without allocating for the claim (msgpack's reflection
// allocated it first: a corrupt row or a hostile delivery claiming four
// billion entries exhausted the consumer's memory).
func TestUnmarshalDoesNotAllocateWhatTheInputClaims(t *testing.T) {
	claim := uint32(1 << 24)
	header := []byte{0x83, 0xa4, 'U', 'U', 'I', 'D', 0xa1, 'u', 0xa5, 'T', 'o', 'p', 'i', 'c', 0xa1, 't', 0xa6, 'H', 'e', 'a', 'd', 'e', 'r'}
	inputs := map[string][]byte{
		"map":            append(slices.Clone(header), 0xdf, byte(claim>>24), byte(claim>>16), byte(claim>>8), byte(claim)),
		"array in a map": append(slices.Clone(header), 0x81, 0xa1, 'a', 0xdd, byte(claim>>24), byte(claim>>16), byte(claim>>8), byte(claim)),
		"binary uuid and a map": {0x82, 0xa4, 'U', 'U', 'I', 'D', 0xc4, 1, 'u', 0xa6, 'H', 'e', 'a', 'd', 'e', 'r',
			0xdf, byte(claim >> 24), byte(claim >> 16), byte(claim >> 8), byte(claim)},
	}
	for name, data := range inputs {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := message.Unmarshal(data)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, message.ErrDecode) {
				t.Fatalf("Unmarshal = %v, want ErrDecode", err)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
				t.Fatalf("decoding %d bytes allocated %d bytes", len(data), grew)
			}
		})
	}
}

// What Marshal writes is plausible: the check the reflection's input
// passes does not refuse valid messages.
func TestMarshalledIsPlausible(t *testing.T) {
	for name, m := range envelopes() {
		b, err := message.Marshal(m)
		if err != nil || !message.Plausible(b) || message.Plausible(b[:len(b)-1]) {
			t.Fatalf("%s: Plausible(whole)=%v, Plausible(cut)=%v (%v)", name, message.Plausible(b), message.Plausible(b[:len(b)-1]), err)
		}
	}
}

// Unmarshal reads a header of strings itself and hands any other to
// msgpack's decoder: a header whose strings come first and another type
// after them is read from its start again, as the reflection reads it.
func TestUnmarshalHeadersMatchReflection(t *testing.T) {
	for i, entries := range [][]any{
		{"a", "x", "b", "y"},
		{"a", "x", "n", int64(5)},
		{"a", "x", "b", []byte("y")},
		{"a", "x", "m", map[string]any{"k": "v"}},
		{"n", nil, "a", "x"},
		{[]byte("a"), "x"}, // a binary key: msgpack's decoder reads it as a string
		{},
	} {
		var buf bytes.Buffer
		e := msgpack.NewEncoder(&buf)
		for _, err := range []error{
			e.EncodeMapLen(3), e.EncodeString("UUID"), e.EncodeString("u"),
			e.EncodeString("Topic"), e.EncodeString("t"), e.EncodeString("Header"), e.EncodeMapLen(len(entries) / 2),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
		for _, v := range entries {
			if err := e.Encode(v); err != nil {
				t.Fatal(err)
			}
		}
		m, err := message.Unmarshal(buf.Bytes())
		if err != nil {
			t.Fatalf("header %d: %v", i, err)
		}
		if len(m.Header) != len(entries)/2 {
			t.Fatalf("header %d: %v, want %d entries", i, m.Header, len(entries)/2)
		}
		sameAsReflection(t, buf.Bytes(), i)
	}
}
