package middleware

import (
	"context"

	"github.com/finalbus/final"
	"github.com/finalbus/final/message"
)

// HeaderCorrelationID carries a correlation id from message to message.
const HeaderCorrelationID = "x-correlation-id"

type correlationKey struct{}

// CorrelationID puts the delivery's correlation id in its context: the
// message's x-correlation-id header, or its UUID when it has none (the
// start of a chain). Read it with CorrelationIDFrom; Propagate copies it
// onto the messages the handler publishes.
func CorrelationID() final.HandlerFunc {
	return func(c *final.Context) error {
		id := c.Message.Header.GetString(HeaderCorrelationID)
		if id == "" {
			id = c.Message.UUID
		}
		parent := c.Context()
		c.SetContext(context.WithValue(parent, correlationKey{}, id))
		defer c.SetContext(parent)
		return c.Next()
	}
}

// CorrelationIDFrom returns the correlation id CorrelationID stored in ctx,
// or "".
func CorrelationIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey{}).(string)
	return id
}

// Propagate sets m's x-correlation-id header from ctx, unless ctx has none
// or m has one already, and returns m.
func Propagate(ctx context.Context, m *message.Message) *message.Message {
	if id := CorrelationIDFrom(ctx); id != "" && m.Header.GetString(HeaderCorrelationID) == "" {
		if m.Header == nil {
			m.Header = message.Header{}
		}
		m.Header.Set(HeaderCorrelationID, id)
	}
	return m
}
