package nats

import (
	"errors"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// FuzzDecode: decoding any headers and body never panics, and every error
// wraps message.ErrDecode. The headers are given as "name: value" lines.
func FuzzDecode(f *testing.F) {
	m := message.New("a.b", []byte("p"), message.WithKey("k"), message.WithContentType("text/plain"))
	m.Header.Set("h", "v")
	for _, format := range []mq.WireFormat{mq.Envelope, mq.CloudEvents} {
		body, _ := message.Marshal(m)
		nm := encode(m, body, format, "svc", time.Now())
		var lines []string
		for k, vs := range nm.Header {
			lines = append(lines, k+": "+vs[0])
		}
		f.Add(strings.Join(lines, "\n"), nm.Data)
	}
	f.Add("ce-specversion: 1.0\nce-id: \"x\\\"\nce-source: %\nce-type: t\nce-time: x", []byte(nil))
	f.Add("Content-Type: application/x-msgpack", []byte{0xc1})
	f.Fuzz(func(t *testing.T, headers string, body []byte) {
		h := natsgo.Header{}
		for _, line := range strings.Split(headers, "\n") {
			if k, v, ok := strings.Cut(line, ": "); ok {
				h.Add(k, v)
			}
		}
		msg, err := decode(h, body)
		if err != nil {
			if !errors.Is(err, message.ErrDecode) {
				t.Fatalf("error does not wrap message.ErrDecode: %v", err)
			}
			return
		}
		if msg == nil {
			t.Fatal("nil message without an error")
		}
	})
}
