package middleware

import (
	"log/slog"
	"time"

	"github.com/finalbus/final"
)

// Logging logs each handled message at Debug, and each failed attempt at
// Warn, with its topic, UUID, attempt and duration.
func Logging(logger *slog.Logger) final.HandlerFunc {
	return func(c *final.Context) error {
		start := time.Now()
		err := c.Next()
		attrs := []any{"topic", c.Topic, "uuid", c.Message.UUID, "attempt", c.Attempt, "took", time.Since(start)}
		if err != nil {
			logger.Warn("final: handler failed", append(attrs, "err", err)...)
		} else {
			logger.Debug("final: handled", attrs...)
		}
		return err
	}
}
