package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// A resource alarm blocks every publishing connection of a RabbitMQ node,
// so tests never raise one on the shared broker (AMQPURL): they use a
// second node of their own on the same machine, which .ci/run starts.

// AlarmAMQPURL is FINAL_TEST_ALARM_AMQP_URL or the local alarm node.
func AlarmAMQPURL() string {
	if v := os.Getenv("FINAL_TEST_ALARM_AMQP_URL"); v != "" {
		return v
	}
	return "amqp://guest:guest@127.0.0.1:5673/"
}

// AlarmNodeName is FINAL_TEST_ALARM_NODE or final-alarm@localhost: the
// Erlang node name rabbitmqctl -n controls the alarm node by.
func AlarmNodeName() string {
	if v := os.Getenv("FINAL_TEST_ALARM_NODE"); v != "" {
		return v
	}
	return "final-alarm@localhost"
}

// AlarmWatermark is the alarm node's configured memory watermark, which
// ClearMemoryAlarm restores (.ci/run configures the node with it).
const AlarmWatermark = "0.4"

// AlarmNode checks that the alarm node answers and returns its URL. It
// holds a lock on the node, across test processes, until t ends: test
// packages run in parallel, and an alarm one raises would block the other.
func AlarmNode(t testing.TB) string {
	t.Helper()
	conn, err := amqp.DialConfig(AlarmAMQPURL(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		Unavailable(t, "the RabbitMQ alarm node at %s (.ci/run starts it): %v", AlarmAMQPURL(), err)
	}
	conn.Close()
	unlock, err := lockFile(filepath.Join(os.TempDir(), "final-test-alarm-node.lock"))
	if err != nil {
		t.Fatalf("lock the alarm node: %v", err)
	}
	t.Cleanup(unlock)
	// An alarm left by a test process that died before its cleanup.
	Rabbitmqctl(t, "set_vm_memory_high_watermark", AlarmWatermark)
	return AlarmAMQPURL()
}

// Rabbitmqctl runs rabbitmqctl against the alarm node.
func Rabbitmqctl(t testing.TB, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args = append([]string{"-n", AlarmNodeName()}, args...)
	if out, err := exec.CommandContext(ctx, "rabbitmqctl", args...).CombinedOutput(); err != nil {
		t.Fatalf("rabbitmqctl %v: %v: %s", args, err, out)
	}
}

// MemoryAlarm raises the alarm node's memory alarm (watermark 0) and
// returns a function that clears it. The alarm is cleared when t ends at
// the latest, whether t failed or not; clearing twice is harmless.
func MemoryAlarm(t testing.TB) (clear func()) {
	t.Helper()
	var once sync.Once
	clear = func() {
		once.Do(func() { Rabbitmqctl(t, "set_vm_memory_high_watermark", AlarmWatermark) })
	}
	t.Cleanup(clear) // registered first: it runs even if raising fails half-way
	Rabbitmqctl(t, "set_vm_memory_high_watermark", "0")
	return clear
}
