package nats_test

import (
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/mqtest"
	"github.com/finalbus/final/mq/nats"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// prefixes gives each test one prefix, shared by its providers, whose
// streams are deleted when the test ends.
var prefixes sync.Map // *testing.T → string

func prefixFor(t *testing.T) string {
	if p, ok := prefixes.Load(t); ok {
		return p.(string)
	}
	p := testenv.NATSPrefix(t)
	prefixes.Store(t, p)
	t.Cleanup(func() { prefixes.Delete(t) })
	return p
}

func TestConformance(t *testing.T) {
	url := testenv.NATS(t)
	mqtest.Run(t, mqtest.Harness{
		New: func(t *testing.T) mq.IProvider { return nats.NewProvider(url, nats.WithPrefix(prefixFor(t))) },
		Service: func(t *testing.T) string {
			prefixFor(t) // its streams outlive the providers: removed last
			return service()
		},
	})
}
