#!/bin/bash
# One-shot job of the compose stack: create the bridge's Kafka topics (idempotent).
# Runs in the apache/kafka image against the `kafka` service.
set -euo pipefail

BOOTSTRAP="${KAFKA_BOOTSTRAP:-kafka:9092}"
PARTITIONS="${KAFKA_TOPIC_PARTITIONS:-6}"
TOPICS_BIN=/opt/kafka/bin/kafka-topics.sh

# Input topic of the kafka source, route topics, dead-letter topic (see config/compose.yaml).
TOPICS=(
  ml.events.raw
  ml.jobs.failed
  ml.models
  ml.events.deadletter
)

for attempt in $(seq 1 30); do
  if "$TOPICS_BIN" --bootstrap-server "$BOOTSTRAP" --list > /dev/null 2>&1; then
    break
  fi
  echo "kafka-init: waiting for $BOOTSTRAP (attempt $attempt)"
  sleep 2
done

for topic in "${TOPICS[@]}"; do
  "$TOPICS_BIN" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
    --topic "$topic" --partitions "$PARTITIONS" --replication-factor 1
done

"$TOPICS_BIN" --bootstrap-server "$BOOTSTRAP" --list
echo "kafka-init: done"
