package nats_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/nats"
)

// Init rejects an option out of range before it connects, naming it.
func TestInvalidOptions(t *testing.T) {
	for name, opt := range map[string]nats.Option{
		"WithPrefix":              nats.WithPrefix("a.b"),
		"WithAckWait":             nats.WithAckWait(10 * time.Millisecond),
		"WithMaxHold":             nats.WithMaxHold(-time.Second),
		"WithDialTimeout":         nats.WithDialTimeout(0),
		"WithPingInterval":        nats.WithPingInterval(0),
		"WithReconnectBackoff":    nats.WithReconnectBackoff(time.Second, time.Millisecond),
		"WithReplicas":            nats.WithReplicas(0),
		"WithDuplicateWindow":     nats.WithDuplicateWindow(0),
		"WithBroadcastInactivity": nats.WithBroadcastInactivity(0),
	} {
		p := nats.NewProvider("nats://127.0.0.1:1", opt)
		err := p.Init(context.Background(), mq.Config{Service: "s", Logger: quiet()})
		if !errors.Is(err, nats.ErrInvalidOption) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: Init = %v, want ErrInvalidOption naming it", name, err)
		}
		p.Close()
	}
	p := nats.NewProvider("nats://127.0.0.1:1", nats.WithMaxHold(0), nats.WithPrefix("my-app"))
	defer p.Close()
	err := p.Init(context.Background(), mq.Config{Service: "s", Logger: quiet()})
	if !errors.Is(err, mq.ErrUnavailable) {
		t.Fatalf("valid options on a closed port: Init = %v, want ErrUnavailable", err)
	}
}
