package memory_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/memory"
	"github.com/finalbus/final/mq/mqtest"
)

func TestConformance(t *testing.T) {
	b := memory.NewBroker()
	var n atomic.Int64
	mqtest.Run(t, mqtest.Harness{
		New:     func(t *testing.T) mq.IProvider { return b.Provider() },
		Service: func(t *testing.T) string { return fmt.Sprintf("svc%d", n.Add(1)) },
	})
}
