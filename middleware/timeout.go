package middleware

import (
	"context"
	"time"

	"github.com/finalbus/final"
)

// Timeout gives the rest of the chain a context that ends after d. A
// handler that honours c.Context() stops then and its error fails the
// attempt (the bus retries it, then dead-letters it); a handler cannot be
// stopped against its will.
func Timeout(d time.Duration) final.HandlerFunc {
	return func(c *final.Context) error {
		parent := c.Context()
		ctx, cancel := context.WithTimeout(parent, d)
		defer cancel()
		c.SetContext(ctx)
		defer c.SetContext(parent)
		return c.Next()
	}
}
