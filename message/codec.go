package message

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/finalbus/final/internal/msgpackcheck"
)

// ErrDecode is wrapped by every error of Unmarshal.
var ErrDecode = errors.New("message: cannot decode")

// Marshal encodes m with msgpack. The same encoding is used in the outbox
// table and on the wire.
//
// The encoding is msgpack's for the struct, by field name: a map of the
// fields in their declared order, the empty omitempty ones left out. It is
// written field by field here rather than by msgpack's reflection, which
// gives the same bytes (TestMarshalMatchesReflection) at a fraction of the
// cost: Marshal runs once per message, on the producer's commit path.
func Marshal(m *Message) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(64 + len(m.UUID) + len(m.Topic) + len(m.Key) + len(m.Payload) + len(m.ContentType) + len(m.Source) + 32*len(m.Header))
	enc := msgpack.GetEncoder()
	enc.Reset(&buf)
	err := encode(enc, m)
	msgpack.PutEncoder(enc)
	if err != nil {
		return nil, fmt.Errorf("message: encode %s: %w", m.UUID, err)
	}
	return buf.Bytes(), nil
}

func encode(e *msgpack.Encoder, m *Message) error {
	n := 5 // UUID, Topic, Header, Payload, Policy
	for _, set := range []bool{m.Key != "", m.ContentType != "", !m.Time.IsZero(), m.Source != ""} {
		if set {
			n++
		}
	}
	w := fieldWriter{e: e}
	w.err = e.EncodeMapLen(n)
	w.str("UUID", m.UUID)
	w.str("Topic", m.Topic)
	if m.Key != "" {
		w.str("Key", m.Key)
	}
	w.name("Header")
	if m.Header == nil {
		w.do(e.EncodeNil)
	} else {
		w.do(func() error { return e.EncodeMapLen(len(m.Header)) })
		for k, v := range m.Header {
			w.do(func() error { return e.EncodeString(k) })
			w.do(func() error { return e.Encode(v) })
		}
	}
	w.name("Payload")
	w.do(func() error { return e.EncodeBytes(m.Payload) })
	w.name("Policy")
	if p := m.Policy; p == nil {
		w.do(e.EncodeNil)
	} else {
		w.do(func() error { return e.EncodeMapLen(4 + btoi(p.Key != "")) })
		w.name("Confirm")
		w.do(func() error { return e.EncodeBool(p.Confirm) })
		w.name("Durable")
		w.do(func() error { return e.EncodeBool(p.Durable) })
		// A time.Duration is an int64 to msgpack, written in nine bytes
		// (the reflection's choice without UseCompactInts).
		w.name("TTL")
		w.do(func() error { return e.EncodeInt64(int64(p.TTL)) })
		w.name("Delay")
		w.do(func() error { return e.EncodeInt64(int64(p.Delay)) })
		if p.Key != "" {
			w.str("Key", p.Key)
		}
	}
	if m.ContentType != "" {
		w.str("ContentType", m.ContentType)
	}
	if !m.Time.IsZero() {
		w.name("Time")
		w.do(func() error { return e.EncodeTime(m.Time) })
	}
	if m.Source != "" {
		w.str("Source", m.Source)
	}
	return w.err
}

// fieldWriter keeps the first error of a run of encoder calls.
type fieldWriter struct {
	e   *msgpack.Encoder
	err error
}

func (w *fieldWriter) do(f func() error) {
	if w.err == nil {
		w.err = f()
	}
}

func (w *fieldWriter) name(s string) {
	w.do(func() error { return w.e.EncodeString(s) })
}

func (w *fieldWriter) str(name, value string) {
	w.name(name)
	w.do(func() error { return w.e.EncodeString(value) })
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Unmarshal decodes data written by Marshal (or by the ancestor library).
// It never panics; malformed input returns an error wrapping ErrDecode.
// A decoded message always has a non-nil Header and Policy.
//
// It reads the form Marshal writes, as the ancestor library did: a map of
// the fields by name, each in the type Marshal writes it in, fields it
// does not know skipped. Each field is read with the decoder msgpack's
// reflection uses for it, so both return the same message
// (TestUnmarshalMatchesReflection, FuzzUnmarshalMatchesReflection). Other
// forms that the reflection read (a struct as an array, a string as
// binary, a nil time, which made it panic) are refused, and so is input
// that claims more than it holds (see msgpackcheck.Plausible): msgpack allocates what
// a length claims before reading it.
func Unmarshal(data []byte) (*Message, error) { return unmarshal(data, false) }

// UnmarshalShared is Unmarshal without a copy of the payload: the
// message's Payload is a slice of data (its capacity ends with it, so an
// append copies), and data must not change while the message is in use.
// The outbox's relay decodes the rows it reads with it: it owns their
// bytes and sends them as they are, and a large payload is then not
// copied once more for nothing.
func UnmarshalShared(data []byte) (*Message, error) { return unmarshal(data, true) }

func unmarshal(data []byte, shared bool) (*Message, error) {
	if !msgpackcheck.Plausible(data) {
		return nil, fmt.Errorf("%w: a length beyond the end of the input, or values nested too deep", ErrDecode)
	}
	m := &Message{}
	d := msgpack.GetDecoder()
	in := &input{data: data, r: bytes.NewReader(data), shared: shared}
	d.Reset(in.r) // a *bytes.Reader is read as it is, without a buffer ahead
	err := decode(d, m, in)
	msgpack.PutDecoder(d)
	if err != nil {
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

// errUncommon is the error of a value not in the type Marshal writes.
var errUncommon = errors.New("a value not in the type Marshal writes")

// input is what a decoder reads: data, through r.
type input struct {
	data   []byte
	r      *bytes.Reader
	shared bool // the payload is a slice of data, not a copy
}

// payload reads a binary value (or nil) for Message.Payload: a copy, or a
// slice of the input when it is shared.
func (in *input) payload(d *msgpack.Decoder) ([]byte, error) {
	if !in.shared {
		return d.DecodeBytes()
	}
	n, err := d.DecodeBytesLen()
	if err != nil || n == -1 {
		return nil, err
	}
	at := len(in.data) - in.r.Len()
	if n > in.r.Len() {
		return nil, io.ErrUnexpectedEOF
	}
	if _, err := in.r.Seek(int64(n), io.SeekCurrent); err != nil {
		return nil, err
	}
	return in.data[at : at+n : at+n], nil
}

func decode(d *msgpack.Decoder, m *Message, in *input) error {
	if err := expect(d, isMap); err != nil {
		return err
	}
	n, err := d.DecodeMapLen()
	if err != nil {
		return err
	}
	return fields(d, n, func(name []byte) (err error) {
		switch string(name) {
		case "UUID":
			err = decodeStr(d, &m.UUID)
		case "Topic":
			err = decodeStr(d, &m.Topic)
		case "Key":
			err = decodeStr(d, &m.Key)
		case "ContentType":
			err = decodeStr(d, &m.ContentType)
		case "Source":
			err = decodeStr(d, &m.Source)
		case "Header":
			if err = expect(d, isMapOrNil); err == nil {
				m.Header, err = d.DecodeMap()
			}
		case "Payload":
			if err = expect(d, isBinOrNil); err == nil {
				m.Payload, err = in.payload(d)
			}
		case "Policy":
			err = decodePolicy(d, &m.Policy)
		case "Time":
			if err = expect(d, isExt); err == nil {
				m.Time, err = decodeTime(d)
			}
		default: // a field of the ancestor library's, or of a later version
			err = d.Skip()
		}
		return err
	})
}

// fields reads the n fields of a map by name: field reads the value of
// each.
func fields(d *msgpack.Decoder, n int, field func(name []byte) error) error {
	var buf [16]byte
	for range n {
		name, err := fieldName(d, buf[:])
		if err != nil {
			return err
		}
		if err := field(name); err != nil {
			return err
		}
	}
	return nil
}

// decodePolicy decodes a Policy as the reflection decodes a *Policy field:
// nil clears it, a map fills it, allocated if it was nil.
func decodePolicy(d *msgpack.Decoder, pp **Policy) error {
	if err := expect(d, isMapOrNil); err != nil {
		return err
	}
	n, err := d.DecodeMapLen()
	if err != nil {
		return err
	}
	if n == -1 {
		*pp = nil
		return nil
	}
	if *pp == nil {
		*pp = &Policy{}
	}
	p := *pp
	return fields(d, n, func(name []byte) (err error) {
		switch string(name) {
		case "Confirm":
			err = decodeBool(d, &p.Confirm)
		case "Durable":
			err = decodeBool(d, &p.Durable)
		case "TTL":
			err = decodeDuration(d, &p.TTL)
		case "Delay":
			err = decodeDuration(d, &p.Delay)
		case "Key":
			err = decodeStr(d, &p.Key)
		default: // ContentType is not encoded ("-"), as any unknown field
			err = d.Skip()
		}
		return err
	})
}

// fieldName reads a field's name into buf when it fits (the names of
// Message and Policy do), without allocating. msgpackcheck.Plausible has
// checked that the input holds the length it claims.
func fieldName(d *msgpack.Decoder, buf []byte) ([]byte, error) {
	if err := expect(d, isStr); err != nil {
		return nil, err
	}
	n, err := d.DecodeBytesLen()
	if err != nil {
		return nil, err
	}
	if n > len(buf) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	return buf, d.ReadFull(buf)
}

// decodeTime reads msgpack's timestamp extension (type -1) as the
// reflection reads a time.Time field: the zero time in UTC, any other in
// local time. DecodeTime would also take NodeJS's type 13, which the
// reflection refuses.
func decodeTime(d *msgpack.Decoder) (time.Time, error) {
	id, n, err := d.DecodeExtHeader()
	if err != nil {
		return time.Time{}, err
	}
	if id != -1 {
		return time.Time{}, fmt.Errorf("extension type %d where a time is", id)
	}
	var b [12]byte
	if n != 4 && n != 8 && n != 12 {
		return time.Time{}, fmt.Errorf("a time of %d bytes", n)
	}
	if err := d.ReadFull(b[:n]); err != nil {
		return time.Time{}, err
	}
	var t time.Time
	switch n {
	case 4:
		t = time.Unix(int64(binary.BigEndian.Uint32(b[:4])), 0)
	case 8:
		v := binary.BigEndian.Uint64(b[:8])
		t = time.Unix(int64(v&0x3ffffffff), int64(v>>34))
	case 12:
		t = time.Unix(int64(binary.BigEndian.Uint64(b[4:12])), int64(binary.BigEndian.Uint32(b[:4])))
	}
	if t.IsZero() {
		t = t.UTC()
	}
	return t, nil
}

func decodeStr(d *msgpack.Decoder, s *string) (err error) {
	if err = expect(d, isStr); err == nil {
		*s, err = d.DecodeString()
	}
	return err
}

func decodeBool(d *msgpack.Decoder, b *bool) (err error) {
	if err = expect(d, func(c byte) bool { return c == msgpcode.True || c == msgpcode.False }); err == nil {
		*b, err = d.DecodeBool()
	}
	return err
}

// decodeDuration reads an integer, as the reflection reads an int64 field.
func decodeDuration(d *msgpack.Decoder, t *time.Duration) error {
	if err := expect(d, isInt); err != nil {
		return err
	}
	n, err := d.DecodeInt64()
	*t = time.Duration(n)
	return err
}

// expect returns errUncommon unless the next value's code satisfies ok; a
// read error (the input ended) is returned as it is.
func expect(d *msgpack.Decoder, ok func(byte) bool) error {
	c, err := d.PeekCode()
	if err != nil {
		return err
	}
	if !ok(c) {
		return errUncommon
	}
	return nil
}

func isMap(c byte) bool {
	return msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32
}

func isMapOrNil(c byte) bool { return c == msgpcode.Nil || isMap(c) }

func isStr(c byte) bool {
	return msgpcode.IsFixedString(c) || c == msgpcode.Str8 || c == msgpcode.Str16 || c == msgpcode.Str32
}

func isBinOrNil(c byte) bool {
	return c == msgpcode.Nil || c == msgpcode.Bin8 || c == msgpcode.Bin16 || c == msgpcode.Bin32
}

func isExt(c byte) bool {
	return c == msgpcode.FixExt4 || c == msgpcode.FixExt8 || c == msgpcode.Ext8
}

func isInt(c byte) bool {
	return msgpcode.IsFixedNum(c) ||
		c == msgpcode.Uint8 || c == msgpcode.Uint16 || c == msgpcode.Uint32 || c == msgpcode.Uint64 ||
		c == msgpcode.Int8 || c == msgpcode.Int16 || c == msgpcode.Int32 || c == msgpcode.Int64
}
