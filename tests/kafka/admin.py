#!/usr/bin/env python3
"""Topic administration and a tiny producer for the tests' Kafka broker (confluent-kafka).

Usage:
  admin.py create-topic BOOTSTRAP TOPIC PARTITIONS [--timeout SECONDS]
      Creates TOPIC with PARTITIONS partitions (an existing topic is fine when it has that
      many) and waits until the broker's metadata shows them all. Topics are created
      explicitly because tansu gives auto-created topics 4 partitions.
  admin.py partitions BOOTSTRAP TOPIC
      Prints the partition count of TOPIC.
  admin.py produce BOOTSTRAP TOPIC [--timeout SECONDS]
      Produces one message per stdin line `KEY<TAB>VALUE` (idempotent, acks=all), waits for
      every delivery and prints `PARTITION OFFSET` per message.
Exits non-zero with the reason on stderr.
"""

import argparse
import sys
import time

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def fail(message):
    """Prints `message` to stderr and exits 1."""
    print(f"admin.py: {message}", file=sys.stderr)
    sys.exit(1)


def partition_count(admin, topic):
    """Partitions of `topic` in the broker's metadata, or None when it has none yet."""
    # All topics: asking about one by name makes tansu auto-create it (with 4 partitions).
    found = admin.list_topics(timeout=5).topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        return None
    return len(found.partitions)


def create_topic(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    deadline = time.monotonic() + args.timeout
    futures = admin.create_topics(
        [NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1)],
        request_timeout=args.timeout,
    )
    try:
        futures[args.topic].result(args.timeout)
    except KafkaException as error:
        if error.args[0].code() != error.args[0].TOPIC_ALREADY_EXISTS:
            fail(f"creating {args.topic!r}: {error}")
    count = None
    while time.monotonic() < deadline:
        count = partition_count(admin, args.topic)
        if count == args.partitions:
            return 0
        time.sleep(0.1)
    fail(f"{args.topic!r} has {count} partitions, wanted {args.partitions}")
    return 1


def partitions(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    print(partition_count(admin, args.topic) or 0)
    return 0


def produce(args):
    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
        }
    )
    results = []

    def delivered(error, message):
        results.append((error, message))

    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line:
            continue
        key, _, value = line.partition("\t")
        producer.produce(args.topic, key=key.encode(), value=value.encode(), on_delivery=delivered)
        producer.poll(0)
    left = producer.flush(args.timeout)
    if left:
        fail(f"{left} messages not delivered within {args.timeout} s")
    for error, message in results:
        if error is not None:
            fail(f"delivery failed: {error}")
        print(message.partition(), message.offset())
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-topic")
    create.add_argument("bootstrap")
    create.add_argument("topic")
    create.add_argument("partitions", type=int)
    create.add_argument("--timeout", type=float, default=20.0)
    create.set_defaults(run=create_topic)
    count = commands.add_parser("partitions")
    count.add_argument("bootstrap")
    count.add_argument("topic")
    count.set_defaults(run=partitions)
    send = commands.add_parser("produce")
    send.add_argument("bootstrap")
    send.add_argument("topic")
    send.add_argument("--timeout", type=float, default=20.0)
    send.set_defaults(run=produce)
    args = parser.parse_args()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
