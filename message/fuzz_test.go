package message_test

import (
	"errors"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/finalbus/final/message"
)

// FuzzUnmarshal feeds arbitrary bytes to the decoder of outbox rows and
// broker deliveries: it must never panic, must fail only with ErrDecode, and
// whatever it accepts must survive a re-encode unchanged.
func FuzzUnmarshal(f *testing.F) {
	good, _ := message.Marshal(sample())
	f.Add(good)
	legacy, _ := msgpack.Marshal(map[string]any{
		"UUID": "legacy-1", "Topic": "orders.created", "Handler": "h", "SvcName": "s",
		"Header": map[string]any{"record_id": 7}, "Payload": []byte("old"),
		"Policy": map[string]any{"Confirm": true, "Durable": true, "TTL": 0, "Delay": 5},
	})
	f.Add(legacy)
	f.Add([]byte{})
	f.Add([]byte("not msgpack"))
	f.Add([]byte{0xc1})
	f.Add([]byte{0x81, 0xa4, 'U', 'U', 'I', 'D', 0xc0})
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff}) // a map claiming 4 billion entries
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := message.Unmarshal(data)
		if err != nil {
			if !errors.Is(err, message.ErrDecode) {
				t.Fatalf("error %v does not wrap ErrDecode", err)
			}
			return
		}
		if m.UUID == "" || m.Topic == "" || m.Header == nil || m.Policy == nil {
			t.Fatalf("accepted an incomplete message: %+v", m)
		}
		again, err := message.Marshal(m)
		if err != nil {
			t.Fatalf("cannot re-encode what was decoded: %v", err)
		}
		m2, err := message.Unmarshal(again)
		if err != nil || m2.UUID != m.UUID || m2.Topic != m.Topic || string(m2.Payload) != string(m.Payload) {
			t.Fatalf("re-encoded message differs: %+v vs %+v (%v)", m2, m, err)
		}
	})
}

// FuzzHeader checks that any header a publisher sets survives the codec:
// values come back equal as strings of their msgpack form.
func FuzzHeader(f *testing.F) {
	f.Add("trace-id", "abc", int64(3), true)
	f.Add("", "", int64(-1), false)
	f.Add("k\x00", "\xff\xfe", int64(1<<62), true)
	f.Fuzz(func(t *testing.T, key, s string, n int64, b bool) {
		m := message.New("topic", nil)
		m.Header.Set(key+"s", s)
		m.Header.Set(key+"n", n)
		m.Header.Set(key+"b", b)
		data, err := message.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := message.Unmarshal(data)
		if err != nil {
			t.Fatal(err)
		}
		if got.Header.GetString(key+"s") != s || got.Header.Get(key+"b") != b {
			t.Fatalf("header changed: %v", got.Header)
		}
		var back int64
		switch v := got.Header.Get(key + "n").(type) {
		case int8:
			back = int64(v)
		case int16:
			back = int64(v)
		case int32:
			back = int64(v)
		case int64:
			back = v
		case uint8:
			back = int64(v)
		case uint16:
			back = int64(v)
		case uint32:
			back = int64(v)
		case uint64:
			back = int64(v)
		default:
			t.Fatalf("number decoded as %T", v)
		}
		if back != n {
			t.Fatalf("number %d came back as %d", n, back)
		}
	})
}
