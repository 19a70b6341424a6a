package finaltest

import (
	"bytes"
	"fmt"
	"reflect"

	"github.com/finalbus/final"
	"github.com/finalbus/final/message"
)

// A Match is a criterion a published message must meet, beside its topic.
type Match struct {
	want  string                       // what it wants, for failure messages
	check func(*message.Message) error // nil when the message meets it, else what differs and what is wanted
}

// Matching returns a Match of your own: check returns nil when m meets it
// and otherwise says what differs from what it wants ("priority 1, want
// 2"); want says what it wants ("priority 2"), for failure messages.
func Matching(want string, check func(m *message.Message) error) Match {
	return Match{want: want, check: check}
}

// Payload matches a message whose payload is p, byte for byte.
func Payload(p []byte) Match {
	return Matching("payload "+snippet(p), func(m *message.Message) error {
		if !bytes.Equal(m.Payload, p) {
			return fmt.Errorf("payload %s, want %s", snippet(m.Payload), snippet(p))
		}
		return nil
	})
}

// Value matches a message whose payload decodes with codec (nil:
// final.MsgpackCodec) into a T equal to want, as final.Typed decodes it:
// equal by reflect.DeepEqual, or encoded by codec to the same bytes (so
// time.Time fields compare by instant, whatever their location).
func Value[T any](codec final.Codec, want T) Match {
	if codec == nil {
		codec = final.MsgpackCodec
	}
	return Matching(fmt.Sprintf("value %+v (%s)", want, codec.Name()), func(m *message.Message) error {
		var got T
		if err := codec.Unmarshal(m.Payload, &got); err != nil {
			return fmt.Errorf("payload %s does not decode as %s into %T: %v", snippet(m.Payload), codec.Name(), got, err)
		}
		if reflect.DeepEqual(got, want) {
			return nil
		}
		g, gErr := codec.Marshal(got)
		w, wErr := codec.Marshal(want)
		if gErr == nil && wErr == nil && bytes.Equal(g, w) {
			return nil
		}
		return fmt.Errorf("value %+v, want %+v", got, want)
	})
}

// Key matches a message whose key (message.WithKey) is key.
func Key(key string) Match {
	return Matching(fmt.Sprintf("key %q", key), func(m *message.Message) error {
		if m.Key != key {
			return fmt.Errorf("key %q, want %q", m.Key, key)
		}
		return nil
	})
}

// Header matches a message whose header name holds the string value. A
// header of another type (numbers, booleans, bytes) needs Matching.
func Header(name, value string) Match {
	return Matching(fmt.Sprintf("header %s=%q", name, value), func(m *message.Message) error {
		got, ok := m.Header[name]
		switch {
		case !ok:
			return fmt.Errorf("no header %s, want %q", name, value)
		case got != value:
			return fmt.Errorf("header %s=%#v, want %q", name, got, value)
		}
		return nil
	})
}

// snippet shows a payload in a failure message: text quoted, anything
// else in hex, the first 64 bytes of it.
func snippet(p []byte) string {
	const limit = 64
	more := ""
	if len(p) > limit {
		p, more = p[:limit], fmt.Sprintf("… (%d bytes)", len(p))
	}
	if printable(p) {
		return fmt.Sprintf("%q%s", p, more)
	}
	return fmt.Sprintf("0x%x%s", p, more)
}

func printable(p []byte) bool {
	for _, r := range string(p) {
		if r == '\uFFFD' || (r < ' ' && r != '\n' && r != '\t') {
			return false
		}
	}
	return true
}
