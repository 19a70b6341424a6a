package final

import (
	"fmt"
	"strings"

	"github.com/finalbus/final/outbox"
)

// Limits of names. A service name becomes part of table and queue names
// ("final_<service>_outbox", "final.<service>.dlq"), so it is short enough
// for MySQL's 64-character identifiers. A message UUID is recorded by the
// consumers' inboxes, whose keys hold MaxUUIDLen bytes.
const (
	MaxServiceNameLen = 48
	MaxTopicLen       = 250 // the AMQP routing key limit (255) less a shard suffix ("#15")
	MaxUUIDLen        = outbox.MaxUUIDLen
)

// Every topic the bus accepts fits an inbox's topic column: this does not
// compile when it would not.
const _ = uint(outbox.MaxTopicLen - MaxTopicLen)

// validateService also wants a letter, digit or '_': MySQL writes '.' and
// '-' in a table's file name as five characters ("@002e"), so 48 of them
// make "final_<service>_outbox.ibd" longer than the 255 bytes a file
// system allows, where 47 fit.
func validateService(name string) error {
	if len(name) == 0 || len(name) > MaxServiceNameLen || !outbox.IdentifierChars(name) || strings.Trim(name, ".-") == "" {
		return fmt.Errorf("%w: %q (want 1-%d of [A-Za-z0-9_.-], not only '.' and '-')", ErrInvalidService, name, MaxServiceNameLen)
	}
	return nil
}

func validateTopic(topic string) error {
	if len(topic) == 0 || len(topic) > MaxTopicLen || !outbox.IdentifierChars(topic) {
		return fmt.Errorf("%w: %q (want 1-%d of [A-Za-z0-9_.-])", ErrInvalidTopic, topic, MaxTopicLen)
	}
	return nil
}

// outboxTable is the ancestor's table name, kept so its rows carry over.
func outboxTable(service string) string { return "final_" + service + "_outbox" }

// inboxTable records the messages a service's Inbox subscriptions handled.
func inboxTable(service string) string { return "final_" + service + "_inbox" }
