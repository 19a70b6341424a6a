package amqp_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
	"github.com/finalbus/final/mq/mqtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	url := testenv.AMQP(t)
	mqtest.Run(t, mqtest.Harness{
		New:      func(t *testing.T) mq.IProvider { return amqp.NewProvider(url) },
		Service:  func(t *testing.T) string { return testenv.Service(t, nil) },
		Declared: func(t *testing.T, cfg mq.Config) { testenv.DropQueues(t, amqp.Queues(cfg)...) },
	})
}
