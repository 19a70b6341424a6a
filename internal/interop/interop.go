// Package interop runs the clients in another language that the interop
// tests check final against: a consumer and a publisher in Node.js with
// nothing but its AMQP client, amqplib (internal/interop/node; .ci/run
// installs it with npm ci).
package interop

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/finalbus/final/internal/testenv"
)

// NodeDir returns the directory of the Node.js scripts once node and their
// dependencies are there; otherwise the test fails under CI=true and is
// skipped elsewhere.
func NodeDir(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		testenv.Unavailable(t, "node (Node.js 18 or later) for the interop tests: %v", err)
	}
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "amqplib")); err != nil {
		testenv.Unavailable(t, "amqplib for the interop tests: run `npm ci` in %s (.ci/run does)", dir)
	}
	return dir
}

// Node returns a command running script of dir with args against the
// broker at url; it is killed when ctx ends.
func Node(ctx context.Context, dir, url, script string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "node", append([]string{script}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "AMQP_URL="+url)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Publish publishes body with publish.js to the "final" exchange under key,
// with the content type and headers given, and waits for the broker's
// confirm.
func Publish(ctx context.Context, t testing.TB, url, key, body, contentType string, headers map[string]string) {
	t.Helper()
	h, err := json.Marshal(headers)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Node(ctx, NodeDir(t), url, "publish.js", key, body, "--content-type", contentType, "--headers", string(h)).CombinedOutput()
	if err != nil {
		t.Fatalf("publish.js: %v: %s", err, out)
	}
}
