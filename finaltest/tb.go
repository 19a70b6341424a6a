package finaltest

import "context"

// TB is the part of testing.TB the helpers use: *testing.T and *testing.B
// are TBs. It is an interface of its own so that a test of a helper can
// stand a recorder in for the test.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Cleanup(f func())
	Context() context.Context
}
