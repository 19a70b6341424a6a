package embedded_test

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/finalbus/final"
	"github.com/finalbus/final/embedded"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/mqtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t *testing.T) *embedded.Env {
	t.Helper()
	env, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Close(); err != nil {
			t.Error(err)
		}
	})
	return env
}

// The JetStream provider passes the conformance suite on the embedded
// server, a current nats-server release (the system's is 2.9).
func TestConformanceOnTheEmbeddedServer(t *testing.T) {
	env := open(t)
	mqtest.Run(t, mqtest.Harness{
		New: func(t *testing.T) mq.IProvider { return env.Provider() },
		Service: func(t *testing.T) string {
			var b [4]byte
			_, _ = rand.Read(b[:])
			return "t" + hex.EncodeToString(b[:])
		},
	})
}

// A bus on the embedded pair: a committed transaction's messages are
// handled, a rolled-back one's are not, and an Inbox handler's write
// commits with its record.
func TestBusOnTheEmbeddedPair(t *testing.T) {
	env := open(t)
	if _, err := env.DB.Exec(`CREATE TABLE credits (ref TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		seen = map[string]int{}
	)
	bus := final.New("embedded_test", env.DB, env.Provider(), final.DefaultOptions())
	bus.Subscribe("payment.received").Inbox().Handler(func(c *final.Context) error {
		if _, err := c.Tx().Exec(`INSERT INTO credits (ref) VALUES (?)`, string(c.Message.Payload)); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		seen[string(c.Message.Payload)]++
		return nil
	})
	if err := bus.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := bus.Shutdown(); err != nil {
			t.Error(err)
		}
	}()
	for _, commit := range []bool{true, false, true} {
		tx, err := env.DB.Begin()
		if err != nil {
			t.Fatal(err)
		}
		ref := map[bool]string{true: "kept", false: "rolled-back"}[commit]
		if err := bus.WithTx(tx).Publish("payment.received", []byte(ref)); err != nil {
			t.Fatal(err)
		}
		if commit {
			err = bus.WithTx(tx).Commit() // this TxBus holds no messages: the relay sends them
		} else {
			err = tx.Rollback()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// The handler counts a message before the bus commits its Inbox
	// transaction, so the credits are waited for too.
	deadline := time.Now().Add(30 * time.Second)
	var credits int
	for {
		if err := env.DB.QueryRow(`SELECT COUNT(*) FROM credits`).Scan(&credits); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		n := seen["kept"]
		mu.Unlock()
		if n == 2 && credits == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("handled %v and %d credits, want kept twice and 2 credits", seen, credits)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	mu.Lock()
	defer mu.Unlock()
	if credits != 2 || seen["rolled-back"] != 0 {
		t.Fatalf("credits %d (want 2), handled %v", credits, seen)
	}
}
