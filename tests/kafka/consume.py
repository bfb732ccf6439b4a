#!/usr/bin/env python3
"""The tests' independent Kafka consumer: reads recording events straight from the broker.

Usage: consume.py BOOTSTRAP TOPIC SCHEMA_PATH (--min-events N | --until-session-ended COUNT)
                  [--timeout SECONDS] [--linger SECONDS]

Independent of the gateway (Python confluent-kafka, not the gateway's rdkafka code), it
assign()s every partition of TOPIC from the beginning (a consumer group's subscribe() takes
about 23 s to get its first message from tansu) and reads until it has seen N events, or
COUNT `session.ended` events, then `--linger` seconds more (to catch duplicates or stray
events). Every message value must be a JSON object valid against the JSON Schema at
SCHEMA_PATH (draft 2020-12) and its key must equal the event's `session_id`.

Prints one JSON line per message to stdout, in the order read:
    {"partition": P, "offset": O, "key": "...", "event": {...}}
Exit status: 0 when the condition was met and every message was valid; 1 on the first
invalid message (schema violation, a value that is not JSON, a key that is not the
session id); 2 on timeout; 3 on a broker or usage error. The reason is on stderr.
"""

import argparse
import json
import sys
import time
import uuid

import jsonschema
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition


def fail(code, message):
    """Prints `message` to stderr and exits with `code`."""
    sys.stdout.flush()
    print(f"consume.py: {message}", file=sys.stderr)
    sys.exit(code)


def partitions(consumer, topic, deadline):
    """The partition ids of `topic`, waiting (until `deadline`) for it to exist."""
    last = None
    while time.monotonic() < deadline:
        try:
            metadata = consumer.list_topics(topic, timeout=2)
            found = metadata.topics.get(topic)
            if found is not None and found.error is None and found.partitions:
                return sorted(found.partitions)
            last = found.error if found is not None else "not in metadata"
        except Exception as error:  # noqa: BLE001 - a broker still starting; retried
            last = error
        time.sleep(0.2)
    fail(2, f"topic {topic!r} did not appear before the timeout ({last})")
    return []


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("schema")
    until = parser.add_mutually_exclusive_group(required=True)
    until.add_argument("--min-events", type=int, metavar="N")
    until.add_argument("--until-session-ended", type=int, metavar="COUNT")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS")
    parser.add_argument("--linger", type=float, default=0.0, metavar="SECONDS")
    args = parser.parse_args()

    try:
        with open(args.schema, encoding="utf-8") as file:
            schema = json.load(file)
        jsonschema.Draft202012Validator.check_schema(schema)
    except (OSError, ValueError, jsonschema.SchemaError) as error:
        fail(3, f"unusable schema {args.schema}: {error}")
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )

    deadline = time.monotonic() + args.timeout
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            # Required by the client, unused: assign() without commits joins no group.
            "group.id": f"tollgate-test-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            # Never create the topic by asking for it (tansu would give it 4 partitions).
            "allow.auto.create.topics": False,
        }
    )
    ids = partitions(consumer, args.topic, deadline)
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in ids])

    seen = 0
    ended = 0
    # When the goal is met, plus --linger (`--min-events 0` is met before the first poll).
    done_at = time.monotonic() + args.linger if args.min_events == 0 else None
    try:
        while True:
            now = time.monotonic()
            if done_at is not None and now >= done_at:
                return 0
            if done_at is None and now >= deadline:
                goal = (
                    f"{args.min_events} events"
                    if args.min_events is not None
                    else f"{args.until_session_ended} session.ended events"
                )
                fail(
                    2,
                    f"timeout after {args.timeout} s waiting for {goal} on {args.topic!r} "
                    f"(partitions {ids}): got {seen} events, {ended} session.ended",
                )
            wait = (done_at if done_at is not None else deadline) - now
            message = consumer.poll(min(0.5, max(wait, 0.01)))
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    continue
                if message.error().fatal():
                    fail(3, f"consumer error: {message.error()}")
                print(f"consume.py: (retrying) {message.error()}", file=sys.stderr)
                continue
            where = f"partition {message.partition()} offset {message.offset()}"
            raw = message.value()
            try:
                event = json.loads(raw)
            except (TypeError, ValueError) as error:
                fail(1, f"{where}: value is not JSON ({error}): {raw!r:.300}")
            errors = sorted(validator.iter_errors(event), key=lambda e: list(e.path))
            if errors:
                details = "; ".join(
                    f"at /{'/'.join(str(p) for p in e.path)}: {e.message}" for e in errors[:5]
                )
                fail(1, f"{where}: schema violation: {details}\n  event: {json.dumps(event)}")
            key = message.key().decode("utf-8", "replace") if message.key() is not None else None
            session_id = event.get("session_id") if isinstance(event, dict) else None
            if key != session_id:
                fail(1, f"{where}: key {key!r} is not the event's session_id {session_id!r}")
            print(
                json.dumps(
                    {
                        "partition": message.partition(),
                        "offset": message.offset(),
                        "key": key,
                        "event": event,
                    }
                ),
                flush=True,
            )
            seen += 1
            if isinstance(event, dict) and event.get("type") == "session.ended":
                ended += 1
            met = (
                seen >= args.min_events
                if args.min_events is not None
                else ended >= args.until_session_ended
            )
            if met and done_at is None:
                done_at = time.monotonic() + args.linger
    finally:
        consumer.close()


if __name__ == "__main__":
    sys.exit(main())
