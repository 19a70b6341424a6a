package mq

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/finalbus/final/message"
)

// WireFormat is how a provider puts a message on the broker. Consumers
// read both formats whatever the setting, telling them apart by the
// transport's headers (never by looking at the body), so a fleet upgrades
// its consumers first and switches its producers afterwards.
type WireFormat uint8

const (
	// Envelope is the ancestor library's format, the default: the body is
	// the whole message encoded by message.Marshal (msgpack, with its
	// header and policy), content type EnvelopeContentType. Only final
	// reads it.
	Envelope WireFormat = iota
	// CloudEvents is CloudEvents 1.0 in binary content mode: the body is
	// the payload, byte for byte, and the message's id, topic (as the
	// event type), source (the service), time, content type and key travel
	// as CloudEvents attributes in the transport's headers, named by that
	// transport's protocol binding; the user's headers travel as plain
	// transport headers beside them. Any language reads it with its broker
	// client alone.
	CloudEvents
)

// String names the format.
func (f WireFormat) String() string {
	switch f {
	case Envelope:
		return "envelope"
	case CloudEvents:
		return "cloudevents"
	}
	return fmt.Sprintf("WireFormat(%d)", uint8(f))
}

// EnvelopeContentType is the content type of a message in the Envelope
// format.
const EnvelopeContentType = "application/x-msgpack"

// CloudEvents context attributes the providers map, by name.
const (
	AttrSpecVersion     = "specversion"
	AttrID              = "id"
	AttrSource          = "source"
	AttrType            = "type"
	AttrTime            = "time"
	AttrDataContentType = "datacontenttype"
	// AttrPartitionKey is the partitioning extension's attribute: the
	// message's Key.
	AttrPartitionKey = "partitionkey"
	// AttrTraceParent and AttrTraceState are the distributed tracing
	// extension's attributes: a message whose Header has "traceparent"
	// (and "tracestate") sends them as attributes too, as that extension
	// asks, and a received event's attributes fill the Header.
	AttrTraceParent = "traceparent"
	AttrTraceState  = "tracestate"
)

// SpecVersion is the CloudEvents version sent.
const SpecVersion = "1.0"

// EventAttributes calls set with each CloudEvents context attribute of msg
// published by source, as its canonical string, except datacontenttype,
// which each protocol binding maps in its own way (msg.ContentType). A
// message without a Time is stamped with now.
func EventAttributes(msg *message.Message, source string, now time.Time, set func(name, value string)) {
	set(AttrSpecVersion, SpecVersion)
	set(AttrID, msg.UUID)
	set(AttrSource, source)
	set(AttrType, msg.Topic)
	t := msg.Time
	if t.IsZero() {
		t = now
	}
	set(AttrTime, t.UTC().Format(time.RFC3339Nano))
	if msg.Key != "" {
		set(AttrPartitionKey, msg.Key)
	}
	if v, ok := msg.Header[AttrTraceParent].(string); ok && v != "" {
		set(AttrTraceParent, v)
		if v, ok := msg.Header[AttrTraceState].(string); ok && v != "" {
			set(AttrTraceState, v)
		}
	}
}

// Event is a CloudEvent received in binary content mode, as a provider
// collects it from the transport before it becomes a message.
type Event struct {
	// Attrs are the context attributes by name, without the transport's
	// prefix, as canonical strings; datacontenttype included.
	Attrs map[string]string
	// Header holds the transport's other headers: the user's.
	Header message.Header
	// Data is the body.
	Data []byte
}

// Message returns e as a message: id → UUID, type → Topic, partitionkey →
// Key, datacontenttype → ContentType, time → Time, source → Source, the
// body → Payload; the tracing attributes and any other extension go to
// Header under their names (a header of the same name wins). It fails,
// wrapping message.ErrDecode, when a required attribute is missing or
// malformed (specversion other than 1.x, an empty id, source or type, a
// source that is no URI-reference, a time that is not RFC 3339, a control
// character in a string). The policy is the default one.
func (e Event) Message() (*message.Message, error) {
	a := e.Attrs
	for name, v := range a {
		if i := strings.IndexFunc(v, isControl); i >= 0 {
			return nil, fmt.Errorf("%w: CloudEvent attribute %q has a control character", message.ErrDecode, name)
		}
	}
	if v := a[AttrSpecVersion]; v != "1.0" && !strings.HasPrefix(v, "1.") {
		return nil, fmt.Errorf("%w: CloudEvent specversion %q, want 1.x", message.ErrDecode, v)
	}
	for _, name := range []string{AttrID, AttrSource, AttrType} {
		if a[name] == "" {
			return nil, fmt.Errorf("%w: CloudEvent without %s", message.ErrDecode, name)
		}
	}
	if _, err := url.Parse(a[AttrSource]); err != nil {
		return nil, fmt.Errorf("%w: CloudEvent source is no URI-reference: %v", message.ErrDecode, err)
	}
	m := &message.Message{
		UUID:        a[AttrID],
		Topic:       a[AttrType],
		Key:         a[AttrPartitionKey],
		ContentType: a[AttrDataContentType],
		Source:      a[AttrSource],
		Payload:     e.Data,
		Header:      message.Header{},
		Policy:      message.DefaultPolicy(),
	}
	if v := a[AttrTime]; v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return nil, fmt.Errorf("%w: CloudEvent time %q: %v", message.ErrDecode, v, err)
		}
		m.Time = t
	}
	for name, v := range a {
		switch name {
		case AttrSpecVersion, AttrID, AttrType, AttrPartitionKey, AttrDataContentType, AttrSource, AttrTime:
		default:
			m.Header[name] = v
		}
	}
	for k, v := range e.Header {
		m.Header[k] = v
	}
	if m.Payload == nil {
		m.Payload = []byte{}
	}
	return m, nil
}

// isControl reports the characters CloudEvents forbids in strings.
func isControl(r rune) bool { return r <= 0x1f || (r >= 0x7f && r <= 0x9f) }

// CheckHeader reports whether h can travel as transport headers in the
// CloudEvents format on every provider: its names are RFC 7230 tokens
// that no transport or CloudEvents takes for itself (the prefixes
// "cloudEvents:", "cloudEvents_", "ce-", "ce_", "Nats-", "Final-",
// "x-final-", and "Content-Type", "Status", "Description", in any case),
// and its values are strings without control characters, booleans,
// integers, floats or byte slices.
func CheckHeader(h message.Header) error {
	for k, v := range h {
		if err := CheckHeaderName(k); err != nil {
			return err
		}
		switch x := v.(type) {
		case string:
			if strings.IndexFunc(x, isControl) >= 0 {
				return fmt.Errorf("header %q: the value has a control character", k)
			}
		case bool, []byte, float32, float64,
			int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		default:
			return fmt.Errorf("header %q: a %T cannot travel as a transport header (use a string, number, boolean or []byte)", k, v)
		}
	}
	return nil
}

// reservedHeaders are header names (lower case) transports use themselves.
var reservedHeaders = []string{"content-type", "status", "description"}

// reservedPrefixes are header name prefixes (lower case) that CloudEvents
// bindings, NATS and final's providers use.
var reservedPrefixes = []string{"cloudevents:", "cloudevents_", "ce-", "ce_", "nats-", "final-", "x-final-"}

// CheckHeaderName is CheckHeader's rule for a header's name alone.
func CheckHeaderName(k string) error {
	if k == "" {
		return fmt.Errorf("header with an empty name")
	}
	for i := 0; i < len(k); i++ {
		if !isTokenChar(k[i]) {
			return fmt.Errorf("header %q: the name is not an RFC 7230 token", k)
		}
	}
	lk := strings.ToLower(k)
	for _, r := range reservedHeaders {
		if lk == r {
			return fmt.Errorf("header %q: the name is a transport's own", k)
		}
	}
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(lk, p) {
			return fmt.Errorf("header %q: the prefix %q is reserved for CloudEvents attributes or a transport", k, p)
		}
	}
	return nil
}

// isTokenChar reports the characters of an RFC 7230 token.
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// HeaderText is a header value as text, for transports whose headers are
// strings (NATS, Kafka): numbers and booleans in Go's canonical form, byte
// slices in standard base64, anything else printed; control characters,
// which such headers cannot carry, become spaces. A receiver gets strings.
func HeaderText(v any) string {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case bool:
		s = strconv.FormatBool(x)
	case []byte:
		s = base64.StdEncoding.EncodeToString(x)
	case int:
		s = strconv.FormatInt(int64(x), 10)
	case int8:
		s = strconv.FormatInt(int64(x), 10)
	case int16:
		s = strconv.FormatInt(int64(x), 10)
	case int32:
		s = strconv.FormatInt(int64(x), 10)
	case int64:
		s = strconv.FormatInt(x, 10)
	case uint:
		s = strconv.FormatUint(uint64(x), 10)
	case uint8:
		s = strconv.FormatUint(uint64(x), 10)
	case uint16:
		s = strconv.FormatUint(uint64(x), 10)
	case uint32:
		s = strconv.FormatUint(uint64(x), 10)
	case uint64:
		s = strconv.FormatUint(x, 10)
	case float32:
		s = strconv.FormatFloat(float64(x), 'g', -1, 32)
	case float64:
		s = strconv.FormatFloat(x, 'g', -1, 64)
	default:
		s = fmt.Sprint(v)
	}
	if strings.IndexFunc(s, isControl) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isControl(r) {
			return ' '
		}
		return r
	}, s)
}
