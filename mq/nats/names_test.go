package nats

import (
	"strings"
	"testing"

	"github.com/finalbus/final/mq"
)

// Topics and services that look alike map to distinct, valid subjects,
// stream names and consumer names.
func TestNamesAreDistinctAndValid(t *testing.T) {
	n := names{prefix: "final"}
	topics := []string{"a", "a.b", "a..b", ".a", "a.", "..", ".", "a_b", "a_db", "a.db", "a__b", "a._b", "a_.b",
		"T_a", "D_a", "dlq", "a-b", strings.Repeat("x", 250), strings.Repeat("x", 249) + "y",
		strings.Repeat(".", 250), strings.Repeat("_", 250)}
	subjects, streams := map[string]string{}, map[string]string{}
	for _, topic := range topics {
		for _, s := range n.streamSubjects(topic) {
			if other, ok := subjects[s]; ok {
				t.Fatalf("topics %q and %q share subject %q", topic, other, s)
			}
			subjects[s] = topic
			if strings.Contains(s, "..") || strings.HasSuffix(s, ".") || strings.ContainsAny(s, "*> \t") {
				t.Fatalf("topic %q: invalid subject %q", topic, s)
			}
		}
		name := n.stream(topic)
		if other, ok := streams[name]; ok {
			t.Fatalf("topics %q and %q share stream %q", topic, other, name)
		}
		streams[name] = topic
		if len(name) > maxStreamName || strings.ContainsAny(name, ".*>/\\ \t") {
			t.Fatalf("topic %q: invalid stream name %q", topic, name)
		}
	}
	var services []string
	for _, s := range topics {
		if len(s) <= 48 {
			services = append(services, s)
		}
	}
	for _, svc := range services {
		for _, s := range []string{n.dlqSubject(svc)} {
			if other, ok := subjects[s]; ok {
				t.Fatalf("service %q's dead letters share subject %q with %q", svc, s, other)
			}
			subjects[s] = svc
		}
		if other, ok := streams[n.dlqStream(svc)]; ok {
			t.Fatalf("service %q's dead-letter stream is %q's", svc, other)
		}
		streams[n.dlqStream(svc)] = svc
	}
	consumers := map[string]string{}
	for _, svc := range services {
		names := []string{serviceConsumer(svc), unkeyedConsumer(svc), broadcastConsumer(svc, "0123abcd")}
		for i := 0; i < mq.OrderShards; i++ {
			names = append(names, shardConsumer(svc, i))
		}
		for _, c := range names {
			if other, ok := consumers[c]; ok {
				t.Fatalf("services %q and %q share consumer %q", svc, other, c)
			}
			consumers[c] = svc
		}
	}
}

func TestPublishSubject(t *testing.T) {
	n := names{prefix: "p"}
	if got := n.publishSubject("a..b", ""); got != "p.a.~.b" {
		t.Fatalf("unkeyed: %q", got)
	}
	if got, want := n.publishSubject("a", "k"), n.shardSubject("a", mq.Shard("k")); got != want || !strings.HasPrefix(got, "p.a.~") {
		t.Fatalf("keyed: %q, want %q", got, want)
	}
}
