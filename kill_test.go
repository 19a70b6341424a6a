package final_test

import (
	"bufio"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/mq/amqp"
)

// The test binary doubles as a producer process that tests kill.
const helperEnv = "FINAL_HELPER_PRODUCER"

// runHelperProducer commits business rows with messages from 4 goroutines
// until it is killed (or 60s pass), printing each ref once committed. Two
// of them commit one message a transaction, the other two three, which
// the bus writes as one row (a pack).
func runHelperProducer() int {
	svc, table, topic, prefix := os.Getenv("FINAL_HELPER_SVC"), os.Getenv("FINAL_HELPER_TABLE"),
		os.Getenv("FINAL_HELPER_TOPIC"), os.Getenv(helperEnv)
	d, err := databaseNamed(os.Getenv("FINAL_HELPER_DB"), os.Getenv("FINAL_HELPER_DSN"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	db, err := sql.Open(d.driver, d.dsn)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	b := final.New(svc, db, amqp.NewProvider(testenv.AMQPURL()), final.DefaultOptions())
	if err := b.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	fmt.Fprintln(out, "ready")
	out.Flush()
	deadline := time.Now().Add(60 * time.Second)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				ref := fmt.Sprintf("%s-%d-%d", prefix, w, i)
				refs := []string{ref}
				var err error
				if w < 2 {
					err = d.publishTx(b, db, table, topic, ref, nil)
				} else { // three messages as one row: a pack
					refs = []string{ref + "a", ref + "b", ref + "c"}
					err = d.publishPackTx(b, db, table, topic, refs)
				}
				if err != nil {
					continue
				}
				mu.Lock()
				for _, r := range refs {
					fmt.Fprintln(out, r)
				}
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return 0
}

// The producers open the test's database: on SQLite, the same file, which
// the killed process shares with the consuming one.
func TestKilledProducerLosesNothing(t *testing.T) { forEachServerDB(t, testKilledProducerLosesNothing) }

func testKilledProducerLosesNothing(t *testing.T, e *env) {
	table := e.business()
	topic := e.svc + ".created"
	rec := newRecorder()
	// The consuming instance of the same service: its relay takes over what
	// the killed producers left in the shared outbox table.
	opt := testOptions(t).WithOutboxScanAgoTime(time.Second).WithOutboxScanInterval(100 * time.Millisecond)
	e.start(e.svc, e.url, opt, func(b *final.Bus) { b.Subscribe(topic).Handler(rec.handle) })

	const kills = 6
	for k := 0; k < kills; k++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=kill"+fmt.Sprint(k), "FINAL_HELPER_SVC="+e.svc,
			"FINAL_HELPER_TABLE="+table, "FINAL_HELPER_TOPIC="+topic, "FINAL_HELPER_DB="+e.name, "FINAL_HELPER_DSN="+e.dsn)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		lines := bufio.NewScanner(stdout)
		// Kill at a different point each time: after 50, 100, … messages.
		want, seen := 50*(k+1), -1
		for seen < want && lines.Scan() {
			seen++
		}
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		require.GreaterOrEqual(t, seen, want, "producer %d exited early", k)
	}

	committed := e.committedRefs(table)
	rec.waitAll(t, committed, 60*time.Second)
	testenv.Eventually(t, 20*time.Second, func() bool { return e.outboxRows() == 0 }, "outbox empty after recovery")
	// Read the truth again: a COMMIT the killed process had sent may have
	// finished on the server after the first read. Its message is then
	// committed, not a phantom.
	committed = e.committedRefs(table)
	rec.waitAll(t, committed, 60*time.Second)
	got := rec.tally(committed)
	t.Logf("kill -9 case on %s: kills=%d %s outbox_left=%d", e.name, kills, got, e.outboxRows())
	require.Zero(t, got.lost)
	require.Zero(t, got.phantom)
}
