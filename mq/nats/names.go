package nats

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/finalbus/final/mq"
)

// names derives subjects, stream names and consumer names from validated
// topics and services (1-250 and 1-48 of [A-Za-z0-9_.-]) and the prefix (1-32
// of [A-Za-z0-9-]). Every mapping is injective, so two topics or two
// services never share a subject, a stream or a consumer:
//
//   - subjects: a topic's '.' separate subject tokens, and an empty token
//     (a topic like "a..b" or ".a") is written "~", which no topic token
//     is. A message of topic T goes to "<prefix>.<T>", or, with a key, to
//     its shard's "<prefix>.<T>.~<shard>" (0-15). The dead letters of
//     service S go to "<prefix>.~dlq.<S>".
//   - stream and consumer names cannot hold '.', so a name is written
//     with '_' as an escape: "_" for '_', "d" after it for '.'. The
//     marker that follows the prefix ("_T_" for a topic's stream, "_D_"
//     for a service's dead letters, "_H_" for a topic whose escaped name
//     would be too long and is hashed instead) and the suffixes of
//     consumer names ("_s3", "_u", "_b<instance>") begin with a '_' that
//     no escaped name has in that place.
type names struct{ prefix string }

// maxStreamName bounds a stream name: the server makes a directory of it.
const maxStreamName = 128

// subjectTokens writes a dotted name as subject tokens.
func subjectTokens(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		if p == "" {
			parts[i] = "~"
		}
	}
	return strings.Join(parts, ".")
}

// escape writes a dotted name with '_' as the escape character.
func escape(name string) string {
	var b strings.Builder
	for _, r := range name {
		switch r {
		case '_':
			b.WriteString("__")
		case '.':
			b.WriteString("_d")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// subject is the subject of topic's unkeyed messages.
func (n names) subject(topic string) string { return n.prefix + "." + subjectTokens(topic) }

// shardSubject is the subject of topic's messages whose key falls in shard i.
func (n names) shardSubject(topic string, i int) string {
	return n.subject(topic) + ".~" + strconv.Itoa(i)
}

// publishSubject is the subject a message of topic with key goes to.
func (n names) publishSubject(topic, key string) string {
	if key == "" {
		return n.subject(topic)
	}
	return n.shardSubject(topic, mq.Shard(key))
}

// streamSubjects are the subjects of topic's stream: its own and its
// shards'.
func (n names) streamSubjects(topic string) []string {
	s := make([]string, 0, mq.OrderShards+1)
	s = append(s, n.subject(topic))
	for i := 0; i < mq.OrderShards; i++ {
		s = append(s, n.shardSubject(topic, i))
	}
	return s
}

// stream names topic's stream.
func (n names) stream(topic string) string {
	name := n.prefix + "_T_" + escape(topic)
	if len(name) <= maxStreamName {
		return name
	}
	sum := sha256.Sum256([]byte(topic))
	keep := maxStreamName - len(n.prefix) - 3 - 1 - 32
	return n.prefix + "_H_" + escape(topic)[:keep] + "_" + hex.EncodeToString(sum[:16])
}

// dlqStream names the stream of service's dead letters.
func (n names) dlqStream(service string) string { return n.prefix + "_D_" + escape(service) }

// dlqSubject is the subject of service's dead letters.
func (n names) dlqSubject(service string) string {
	return n.prefix + ".~dlq." + subjectTokens(service)
}

// Consumer names, unique within a topic's stream.

// serviceConsumer names the durable consumer of service's plain
// subscription of a topic: its instances compete for its messages.
func serviceConsumer(service string) string { return escape(service) }

// shardConsumer names the durable consumer of shard i of service's
// Ordered subscription of a topic.
func shardConsumer(service string, i int) string { return escape(service) + "_s" + strconv.Itoa(i) }

// unkeyedConsumer names the durable consumer of the unkeyed messages of
// service's Ordered subscription of a topic.
func unkeyedConsumer(service string) string { return escape(service) + "_u" }

// broadcastConsumer names the consumer of one instance's Broadcast
// subscription of a topic.
func broadcastConsumer(service, instance string) string {
	return escape(service) + "_b" + instance
}
