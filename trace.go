package final

import (
	"context"
	"maps"

	"go.opentelemetry.io/otel/trace"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// withTrace returns m with the W3C trace context of ctx in its Header
// ("traceparent", and "tracestate" when there is one), so that the trace
// travels with the message through the outbox to its consumers (in the
// CloudEvents wire format also as the distributed tracing extension's
// attributes). It returns m itself when ctx carries no trace or m's Header
// has a traceparent already, and otherwise a copy: the caller's message
// and header are left as they are.
func withTrace(ctx context.Context, m *message.Message) *message.Message {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return m
	}
	if _, ok := m.Header[mq.AttrTraceParent]; ok {
		return m
	}
	c := *m
	c.Header = maps.Clone(m.Header)
	if c.Header == nil {
		c.Header = message.Header{}
	}
	c.Header[mq.AttrTraceParent] = traceparent(sc)
	if ts := sc.TraceState().String(); ts != "" {
		c.Header[mq.AttrTraceState] = ts
	}
	return &c
}

// traceparent formats sc as the W3C traceparent header, version 00.
func traceparent(sc trace.SpanContext) string {
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String()
}
