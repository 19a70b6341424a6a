package final

import (
	"fmt"
	"regexp"
)

// Limits of names. A service name becomes part of table and queue names
// ("final_<service>_outbox", "final.<service>.dlq"), so it is short enough
// for MySQL's 64-character identifiers.
const (
	MaxServiceNameLen = 48
	MaxTopicLen       = 250 // the AMQP routing key limit (255) less a shard suffix ("#15")
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

func validateService(name string) error {
	if len(name) == 0 || len(name) > MaxServiceNameLen || !nameRE.MatchString(name) {
		return fmt.Errorf("%w: %q (want 1-%d of [A-Za-z0-9_.-])", ErrInvalidService, name, MaxServiceNameLen)
	}
	return nil
}

func validateTopic(topic string) error {
	if len(topic) == 0 || len(topic) > MaxTopicLen || !nameRE.MatchString(topic) {
		return fmt.Errorf("%w: %q (want 1-%d of [A-Za-z0-9_.-])", ErrInvalidTopic, topic, MaxTopicLen)
	}
	return nil
}

// outboxTable is the ancestor's table name, kept so its rows carry over.
func outboxTable(service string) string { return "final_" + service + "_outbox" }

// inboxTable records the messages a service's Inbox subscriptions handled.
func inboxTable(service string) string { return "final_" + service + "_inbox" }
