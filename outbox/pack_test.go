package outbox_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox"
)

func bodiesOf(t *testing.T, sizes ...int) [][]byte {
	t.Helper()
	bodies := make([][]byte, len(sizes))
	for i, n := range sizes {
		var err error
		if bodies[i], err = message.Marshal(message.New("t", bytes.Repeat([]byte{'x'}, n))); err != nil {
			t.Fatal(err)
		}
	}
	return bodies
}

// A pack decodes to its messages, in order, whatever the sizes of its
// array and of its strings; a message alone is no pack.
func TestPackRoundTrip(t *testing.T) {
	for _, sizes := range [][]int{{0}, {1, 2}, {300, 5}, {70_000, 0, 1}, make([]int, 17), make([]int, 64)} {
		bodies := bodiesOf(t, sizes...)
		rec := outbox.Record{Body: outbox.Pack(bodies)}
		rec.Decode()
		if rec.Err != nil || rec.Message != nil || len(rec.Pack) != len(bodies) {
			t.Fatalf("%v: err %v, message %v, %d parts", sizes, rec.Err, rec.Message, len(rec.Pack))
		}
		for i, p := range rec.Parts() {
			if !bytes.Equal(p.Body, bodies[i]) || len(p.Message.Payload) != sizes[i] {
				t.Fatalf("%v: part %d differs", sizes, i)
			}
		}
	}
	// The 32-bit array length Pack writes past 65,535 messages.
	two := bodiesOf(t, 1, 2)
	array32 := append([]byte{0xdd, 0, 0, 0, 2}, outbox.Pack(two)[1:]...)
	rec := outbox.Record{Body: array32}
	rec.Decode()
	if rec.Err != nil || len(rec.Pack) != 2 || !bytes.Equal(rec.Pack[1].Body, two[1]) {
		t.Fatalf("a pack with a 32-bit length: err %v, %d parts", rec.Err, len(rec.Pack))
	}
	one := outbox.Record{Body: bodiesOf(t, 3)[0]}
	one.Decode()
	if one.Err != nil || one.Pack != nil || one.Message == nil || len(one.Parts()) != 1 || outbox.IsPack(one.Body) {
		t.Fatalf("a message alone decoded as %+v", one)
	}
}

// A malformed pack is an error wrapping message.ErrDecode, never a panic
// or a part read past the end.
func TestPackMalformed(t *testing.T) {
	good := outbox.Pack(bodiesOf(t, 1, 2))
	cases := map[string][]byte{
		"empty array":       {0x90},
		"truncated":         good[:len(good)-1],
		"trailing bytes":    append(bytes.Clone(good), 0),
		"count beyond":      append([]byte{0x93}, good[1:]...),
		"not a bin string":  {0x91, 0xa1, 'x'},
		"length beyond":     {0x91, 0xc6, 0xff, 0xff, 0xff, 0xff, 1},
		"bad message":       outbox.Pack([][]byte{{0x80}}),
		"array32 truncated": {0xdd, 0, 0},
		"count beyond size": {0xdd, 0xff, 0xff, 0xff, 0xff, 0xc4, 0},
		"keyed":             nil, // below
	}
	for name, body := range cases {
		rec := outbox.Record{Body: body}
		if name == "keyed" { // a pack is never ordered
			rec = outbox.Record{Body: good, OrderKey: 7}
		}
		rec.Decode()
		if !errors.Is(rec.Err, message.ErrDecode) || rec.Pack != nil || rec.Message != nil || rec.Parts() != nil {
			t.Errorf("%s: err %v, %d parts, message %v; want an error wrapping message.ErrDecode", name, rec.Err, len(rec.Pack), rec.Message)
		}
	}
}
