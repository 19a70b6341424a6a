package redact_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/internal/redact"
)

func TestURL(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{"amqp://guest:guest@127.0.0.1:5672/", "amqp://guest:xxxxx@127.0.0.1:5672/"},
		{"amqps://app:p%40ss@rabbit.internal/prod?heartbeat=10", "amqps://app:xxxxx@rabbit.internal/prod?heartbeat=10"},
		// Unencoded reserved characters: net/url misreads these.
		{"amqp://app:s3cr/et@rabbit:5672/", "amqp://app:xxxxx@rabbit:5672/"},
		{"amqp://app:12#34@rabbit/", "amqp://app:xxxxx@rabbit/"},
		{"amqp://app:a@b?c@rabbit/", "amqp://app:xxxxx@rabbit/"},
		{"amqp://app:a:b@rabbit/", "amqp://app:xxxxx@rabbit/"},
		{"amqp://app:@rabbit/", "amqp://app:xxxxx@rabbit/"},
		{"app:secret@rabbit", "app:xxxxx@rabbit"}, // no scheme
		// Nothing to hide.
		{"amqp://rabbit:5672/", "amqp://rabbit:5672/"},
		{"amqp://app@rabbit/", "amqp://app@rabbit/"},
		{"amqp://rabbit/vhost", "amqp://rabbit/vhost"},
		{"", ""},
	} {
		require.Equal(t, tc.want, redact.URL(tc.raw), "redact.URL(%q)", tc.raw)
	}
}
