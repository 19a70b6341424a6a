package message

import (
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// ErrDecode is wrapped by every error of Unmarshal.
var ErrDecode = errors.New("message: cannot decode")

// Marshal encodes m with msgpack. The same encoding is used in the outbox
// table and on the wire.
func Marshal(m *Message) ([]byte, error) {
	b, err := msgpack.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("message: encode %s: %w", m.UUID, err)
	}
	return b, nil
}

// Unmarshal decodes data written by Marshal (or by the ancestor library).
// It never panics; malformed input returns an error wrapping ErrDecode.
// A decoded message always has a non-nil Header and Policy.
func Unmarshal(data []byte) (*Message, error) {
	m := &Message{}
	if err := msgpack.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	if m.UUID == "" || m.Topic == "" {
		return nil, fmt.Errorf("%w: missing uuid or topic", ErrDecode)
	}
	if m.Header == nil {
		m.Header = Header{}
	}
	if m.Policy == nil {
		m.Policy = DefaultPolicy()
	}
	return m, nil
}
