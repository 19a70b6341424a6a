package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSURL is FINAL_TEST_NATS_URL or the local nats-server.
func NATSURL() string {
	if v := os.Getenv("FINAL_TEST_NATS_URL"); v != "" {
		return v
	}
	return "nats://127.0.0.1:4222"
}

// JetStream connects to the nats-server at url, without reconnecting, and
// returns its JetStream API and a function that closes the connection.
func JetStream(url string, timeout time.Duration) (jetstream.JetStream, func(), error) {
	nc, err := nats.Connect(url, nats.Timeout(timeout), nats.NoReconnect())
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return js, nc.Close, nil
}

// NATS checks that nats-server answers with JetStream enabled and returns
// its URL.
func NATS(t testing.TB) string {
	t.Helper()
	js, done, err := JetStream(NATSURL(), 5*time.Second)
	if err != nil {
		Unavailable(t, "nats-server at %s: %v", NATSURL(), err)
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		Unavailable(t, "JetStream at %s: %v", NATSURL(), err)
	}
	return NATSURL()
}

// NATSPrefix returns a fresh subject and stream prefix for t (for the NATS
// provider's WithPrefix), and deletes the streams named with it when t
// ends: their consumers and dead letters go with them.
func NATSPrefix(t testing.TB) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	prefix := "t" + hex.EncodeToString(b[:])
	t.Cleanup(func() { DropNATSStreams(prefix) })
	return prefix
}

// DropNATSStreams deletes the streams whose names begin with prefix and
// '_', as far as the server can be reached.
func DropNATSStreams(prefix string) {
	js, done, err := JetStream(NATSURL(), 5*time.Second)
	if err != nil {
		return
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	names := js.StreamNames(ctx)
	var drop []string
	for name := range names.Name() {
		if strings.HasPrefix(name, prefix+"_") {
			drop = append(drop, name)
		}
	}
	for _, name := range drop {
		_ = js.DeleteStream(ctx, name)
	}
}
