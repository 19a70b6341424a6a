package outbox

import (
	"fmt"
	"regexp"
)

var identifierRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// ValidateIdentifier reports whether name may be used as a table name in a
// database whose identifiers are at most maxLen bytes: 1 to maxLen of
// letters, digits, '_', '.' and '-', which are safe inside any SQL
// dialect's identifier quotes. Each store quotes it in its own way.
func ValidateIdentifier(name string, maxLen int) error {
	if len(name) == 0 || len(name) > maxLen || !identifierRE.MatchString(name) {
		return fmt.Errorf("%w: %q (want 1-%d of [A-Za-z0-9_.-])", ErrInvalidIdentifier, name, maxLen)
	}
	return nil
}
