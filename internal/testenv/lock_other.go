//go:build !unix

package testenv

// lockFile does not lock where flock is missing: run the packages that use
// the alarm node one at a time there (go test -p 1).
func lockFile(string) (unlock func(), err error) { return func() {}, nil }
