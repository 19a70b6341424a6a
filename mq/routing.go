package mq

import (
	"hash/fnv"
	"strconv"
)

// OrderShards is the number of shards keyed messages are spread over. It is
// part of the wire protocol: publishers and ordered subscribers must agree.
const OrderShards = 16

// Shard returns the shard of a message key.
func Shard(key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % OrderShards)
}

// RoutingKey is the routing key of a message: its topic, followed for a
// keyed message by "#" and its shard ('#' never occurs in a topic).
func RoutingKey(topic, key string) string {
	if key == "" {
		return topic
	}
	return ShardRoutingKey(topic, Shard(key))
}

// ShardRoutingKey is the routing key of shard i of topic.
func ShardRoutingKey(topic string, i int) string {
	return topic + "#" + strconv.Itoa(i)
}
