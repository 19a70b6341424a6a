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
// does not know skipped. Each field is read as msgpack's reflection reads
// it, so both return the same message (TestUnmarshalMatchesReflection,
// TestUnmarshalHeadersMatchReflection, FuzzUnmarshalMatchesReflection). Other
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
	in := &input{data: data, shared: shared}
	if err := in.message(m); err != nil {
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

// input is what Unmarshal reads: the values of data from off. The values
// Marshal writes are read from the slice itself (a decoder reading byte by
// byte through an io.Reader cost about as much again), and so is a Header
// of strings to strings; any other Header, and a field Unmarshal does not
// know, are read by msgpack's decoder, as the reflection reads them.
type input struct {
	data   []byte
	off    int
	shared bool // the payload is a slice of data, not a copy
}

func (in *input) message(m *Message) error {
	if err := in.expect(isMap); err != nil {
		return err
	}
	n, err := in.mapLen()
	if err != nil {
		return err
	}
	return in.fields(n, func(name []byte) (err error) {
		switch string(name) {
		case "UUID":
			m.UUID, err = in.str()
		case "Topic":
			m.Topic, err = in.str()
		case "Key":
			m.Key, err = in.str()
		case "ContentType":
			m.ContentType, err = in.str()
		case "Source":
			m.Source, err = in.str()
		case "Header":
			if err = in.expect(isMapOrNil); err == nil {
				m.Header, err = in.header()
			}
		case "Payload":
			if err = in.expect(isBinOrNil); err == nil {
				m.Payload, err = in.payload()
			}
		case "Policy":
			err = in.policy(&m.Policy)
		case "Time":
			if err = in.expect(isExt); err == nil {
				m.Time, err = in.timestamp()
			}
		default: // a field of the ancestor library's, or of a later version
			err = in.skip()
		}
		return err
	})
}

// fields reads the n fields of a map by name: field reads the value of
// each. A name is a slice of the input, valid during the call.
func (in *input) fields(n int, field func(name []byte) error) error {
	for range n {
		name, err := in.strBytes()
		if err != nil {
			return err
		}
		if err := field(name); err != nil {
			return err
		}
	}
	return nil
}

// header reads a Header (expect has checked its code). A map of strings
// to strings, the usual one, is read here; any other (nil, or a value of
// another type) by msgpack's decoder, as the reflection reads it.
func (in *input) header() (map[string]any, error) {
	at := in.off
	if h, ok := in.stringMap(); ok {
		return h, nil
	}
	in.off = at
	var h map[string]any
	err := in.decoder(func(d *msgpack.Decoder) (err error) {
		h, err = d.DecodeMap()
		return err
	})
	return h, err
}

// stringMap reads a map whose keys and values are all strings, or reports
// that the map is not one (nil included), the input then read partway
// (header reads it again from its start, the strings copied so far thrown
// away: the usual header costs nothing more).
func (in *input) stringMap() (map[string]any, bool) {
	n, err := in.mapLen()
	if err != nil || n < 0 {
		return nil, false
	}
	h := make(map[string]any, n)
	for range n {
		k, err := in.strBytes()
		if err != nil {
			return nil, false
		}
		v, err := in.strBytes()
		if err != nil {
			return nil, false
		}
		h[string(k)] = string(v)
	}
	return h, true
}

// policy decodes a Policy as the reflection decodes a *Policy field: nil
// clears it, a map fills it, allocated if it was nil.
func (in *input) policy(pp **Policy) error {
	if err := in.expect(isMapOrNil); err != nil {
		return err
	}
	n, err := in.mapLen()
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
	return in.fields(n, func(name []byte) (err error) {
		switch string(name) {
		case "Confirm":
			p.Confirm, err = in.boolean()
		case "Durable":
			p.Durable, err = in.boolean()
		case "TTL":
			p.TTL, err = in.duration()
		case "Delay":
			p.Delay, err = in.duration()
		case "Key":
			p.Key, err = in.str()
		default: // ContentType is not encoded ("-"), as any unknown field
			err = in.skip()
		}
		return err
	})
}

// decoder runs f with msgpack's decoder on the input from off, and moves
// off past what it read (a *bytes.Reader is read as it is, without a
// buffer ahead).
func (in *input) decoder(f func(d *msgpack.Decoder) error) error {
	r := bytes.NewReader(in.data[in.off:])
	d := msgpack.GetDecoder()
	d.Reset(r)
	err := f(d)
	msgpack.PutDecoder(d)
	in.off = len(in.data) - r.Len()
	return err
}

// skip passes over a value, as the reflection skips a field it does not
// know.
func (in *input) skip() error {
	return in.decoder(func(d *msgpack.Decoder) error { return d.Skip() })
}

// next returns the next n bytes of the input.
func (in *input) next(n int) ([]byte, error) {
	if n < 0 || n > len(in.data)-in.off {
		return nil, io.ErrUnexpectedEOF
	}
	b := in.data[in.off : in.off+n : in.off+n]
	in.off += n
	return b, nil
}

// code reads a value's first byte.
func (in *input) code() (byte, error) {
	b, err := in.next(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

// unsigned reads a big-endian unsigned integer of size bytes (1, 2, 4 or
// 8).
func (in *input) unsigned(size int) (uint64, error) {
	b, err := in.next(size)
	if err != nil {
		return 0, err
	}
	switch size {
	case 1:
		return uint64(b[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(b)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(b)), nil
	}
	return binary.BigEndian.Uint64(b), nil
}

// length reads a length of size bytes (1, 2 or 4) that follows a value's
// code.
func (in *input) length(size int) (int, error) {
	n, err := in.unsigned(size)
	return int(n), err
}

// mapLen reads a map's header (expect has checked its code): its length,
// or -1 for nil.
func (in *input) mapLen() (int, error) {
	c, err := in.code()
	if err != nil {
		return 0, err
	}
	switch {
	case c == msgpcode.Nil:
		return -1, nil
	case c == msgpcode.Map16:
		return in.length(2)
	case c == msgpcode.Map32:
		return in.length(4)
	}
	return int(c & msgpcode.FixedMapMask), nil
}

// strBytes reads a string as a slice of the input, refusing any other
// type.
func (in *input) strBytes() ([]byte, error) {
	if err := in.expect(isStr); err != nil {
		return nil, err
	}
	c, err := in.code()
	if err != nil {
		return nil, err
	}
	var n int
	switch c {
	case msgpcode.Str8:
		n, err = in.length(1)
	case msgpcode.Str16:
		n, err = in.length(2)
	case msgpcode.Str32:
		n, err = in.length(4)
	default:
		n = int(c & msgpcode.FixedStrMask)
	}
	if err != nil {
		return nil, err
	}
	return in.next(n)
}

// str reads a string, refusing any other type.
func (in *input) str() (string, error) {
	b, err := in.strBytes()
	return string(b), err
}

// payload reads a binary value (expect has checked its code) or nil for
// Message.Payload: a copy, or a slice of the input when it is shared. An
// empty one is empty, not nil, as the reflection reads it.
func (in *input) payload() ([]byte, error) {
	c, err := in.code()
	if err != nil {
		return nil, err
	}
	var n int
	switch c {
	case msgpcode.Nil:
		return nil, nil
	case msgpcode.Bin8:
		n, err = in.length(1)
	case msgpcode.Bin16:
		n, err = in.length(2)
	default: // Bin32
		n, err = in.length(4)
	}
	if err != nil {
		return nil, err
	}
	b, err := in.next(n)
	if err != nil || in.shared {
		return b, err
	}
	return append(make([]byte, 0, n), b...), nil
}

// boolean reads a boolean, refusing any other type.
func (in *input) boolean() (bool, error) {
	c, err := in.code()
	if err != nil {
		return false, err
	}
	switch c {
	case msgpcode.True:
		return true, nil
	case msgpcode.False:
		return false, nil
	}
	return false, errUncommon
}

// duration reads an integer of any of msgpack's forms, as the reflection
// reads an int64 field (a uint64 past the int64 range wraps, as there),
// refusing any other type.
func (in *input) duration() (time.Duration, error) {
	c, err := in.code()
	if err != nil {
		return 0, err
	}
	var n uint64
	switch {
	case msgpcode.IsFixedNum(c):
		return time.Duration(int8(c)), nil
	case c == msgpcode.Uint8:
		n, err = in.unsigned(1)
	case c == msgpcode.Uint16:
		n, err = in.unsigned(2)
	case c == msgpcode.Uint32:
		n, err = in.unsigned(4)
	case c == msgpcode.Uint64:
		n, err = in.unsigned(8)
	case c == msgpcode.Int8:
		n, err = in.unsigned(1)
		return time.Duration(int8(n)), err
	case c == msgpcode.Int16:
		n, err = in.unsigned(2)
		return time.Duration(int16(n)), err
	case c == msgpcode.Int32:
		n, err = in.unsigned(4)
		return time.Duration(int32(n)), err
	case c == msgpcode.Int64:
		n, err = in.unsigned(8)
	default:
		return 0, errUncommon
	}
	return time.Duration(int64(n)), err
}

// timestamp reads msgpack's timestamp extension (type -1; expect has
// checked the extension's code) as the reflection reads a time.Time field:
// the zero time in UTC, any other in local time. Any other extension type
// is refused, as by the reflection.
func (in *input) timestamp() (time.Time, error) {
	c, err := in.code()
	if err != nil {
		return time.Time{}, err
	}
	n := 4
	switch c {
	case msgpcode.FixExt8:
		n = 8
	case msgpcode.Ext8:
		if n, err = in.length(1); err != nil {
			return time.Time{}, err
		}
	}
	id, err := in.code()
	if err != nil {
		return time.Time{}, err
	}
	if int8(id) != -1 {
		return time.Time{}, fmt.Errorf("extension type %d where a time is", int8(id))
	}
	if n != 4 && n != 8 && n != 12 {
		return time.Time{}, fmt.Errorf("a time of %d bytes", n)
	}
	b, err := in.next(n)
	if err != nil {
		return time.Time{}, err
	}
	var t time.Time
	switch n {
	case 4:
		t = time.Unix(int64(binary.BigEndian.Uint32(b)), 0)
	case 8:
		v := binary.BigEndian.Uint64(b)
		t = time.Unix(int64(v&0x3ffffffff), int64(v>>34))
	case 12:
		t = time.Unix(int64(binary.BigEndian.Uint64(b[4:12])), int64(binary.BigEndian.Uint32(b[:4])))
	}
	if t.IsZero() {
		t = t.UTC()
	}
	return t, nil
}

// expect returns errUncommon unless the next value's code satisfies ok; a
// read error (the input ended) is returned as it is.
func (in *input) expect(ok func(byte) bool) error {
	if in.off >= len(in.data) {
		return io.ErrUnexpectedEOF
	}
	if !ok(in.data[in.off]) {
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
