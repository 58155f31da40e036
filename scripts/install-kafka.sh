#!/usr/bin/env bash
# Fetch the Apache Kafka test broker's jars from Maven Central into .tools/kafka/libs (idempotent).
# Usage: scripts/install-kafka.sh [LIBS_DIR]
#
# The broker is `org.apache.kafka:kafka_2.13` plus a log4j2 backend, pinned in scripts/kafka/pom.xml; Maven copies
# them with their runtime dependencies. Maven's own cache (~/.m2) makes a second run offline. Needs a JDK 17+
# (Kafka 4.x) and Maven: Debian's `openjdk-17-jdk-headless` and `maven`.
set -euo pipefail
cd "$(dirname "$0")/.."
LIBS=${1:-.tools/kafka/libs}
POM=scripts/kafka/pom.xml
STAMP="$LIBS/.pom.sha256"

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "install-kafka: '$1' not found. The test broker is Apache Kafka 4.x from Maven Central and needs a JDK 17+" >&2
    echo "install-kafka: and Maven: apt-get install -y openjdk-17-jdk-headless maven  (or set JAVA_HOME/PATH)" >&2
    exit 1
  fi
}
need java
need mvn
major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' | cut -d. -f1)
if [[ -z "$major" || "$major" -lt 17 ]]; then
  echo "install-kafka: Java ${major:-?} found; Kafka 4.x needs Java 17 or newer (apt-get install -y openjdk-17-jdk-headless)" >&2
  exit 1
fi

want=$(sha256sum "$POM" | cut -d' ' -f1)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] && ls "$LIBS"/kafka_2.13-*.jar >/dev/null 2>&1; then
  echo "install-kafka: $(basename "$(ls "$LIBS"/kafka_2.13-*.jar)") already in $LIBS"
  exit 0
fi
rm -rf "$LIBS"
mkdir -p "$LIBS"
mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$(pwd)/$LIBS"
echo "$want" > "$STAMP"
echo "install-kafka: $(ls "$LIBS"/*.jar | wc -l) jars in $LIBS ($(basename "$(ls "$LIBS"/kafka_2.13-*.jar)"))"
