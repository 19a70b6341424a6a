package outbox

import (
	"fmt"
	"regexp"
)

// MaxIdentifierLen is MySQL's limit for a table name.
const MaxIdentifierLen = 64

var identifierRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// ValidateIdentifier reports whether name may be used as a table name: 1 to
// 64 characters among letters, digits, '_', '.' and '-'. Such a name is safe
// inside backquotes.
func ValidateIdentifier(name string) error {
	if len(name) == 0 || len(name) > MaxIdentifierLen || !identifierRE.MatchString(name) {
		return fmt.Errorf("%w: %q (want 1-%d of [A-Za-z0-9_.-])", ErrInvalidIdentifier, name, MaxIdentifierLen)
	}
	return nil
}

// QuoteIdentifier validates name and returns it in backquotes.
func QuoteIdentifier(name string) (string, error) {
	if err := ValidateIdentifier(name); err != nil {
		return "", err
	}
	return "`" + name + "`", nil
}
