#!/bin/sh
# Create recstream's Kafka topics, idempotently, with partition counts from the
# environment. Runs in the apache/kafka image: the compose service `topics`
# (deploy/compose.yaml) and the Kubernetes Job (deploy/k8s/topics-job.yaml).
#
#   KAFKA_BOOTSTRAP           bootstrap servers (default: $RECSTREAM_BOOTSTRAP)
#   PARTITIONS                user-events, search-text, recommendations, item-feedback
#                             (default: $RECSTREAM_WORKER_PARTITIONS, else 4)
#   ITEM_UPDATES_PARTITIONS   item-updates (default 1: catalog order is global)
#   DLQ_PARTITIONS            recstream-dlq (default 1)
#   REPLICATION_FACTOR        default 1 (use 3 on a real cluster)
#   MIN_INSYNC_REPLICAS       default: unset (broker default); 2 with RF 3
#   RECSTREAM_TOPICS__*       topic names, the same variables the worker reads
#   RECSTREAM_SECURITY__*     PROTOCOL, SASL_MECHANISM, USERNAME, PASSWORD (as the worker)
#   KAFKA_TOPICS              the kafka-topics command (default /opt/kafka/bin/kafka-topics.sh)
#
# user-events and search-text must have the same partition count: both are
# keyed by user and feed the same per-user tables (co-partitioned). An
# existing topic with a different count is an error, never silently altered:
# adding partitions remaps users to partitions and orphans their table state.
set -eu

BOOTSTRAP="${KAFKA_BOOTSTRAP:-${RECSTREAM_BOOTSTRAP:-kafka:9092}}"
KAFKA_TOPICS="${KAFKA_TOPICS:-/opt/kafka/bin/kafka-topics.sh}"
PARTITIONS="${PARTITIONS:-${RECSTREAM_WORKER_PARTITIONS:-4}}"
ITEM_UPDATES_PARTITIONS="${ITEM_UPDATES_PARTITIONS:-1}"
DLQ_PARTITIONS="${DLQ_PARTITIONS:-1}"
RF="${REPLICATION_FACTOR:-1}"

# Client security, from the same variables the worker reads.
CLIENT_CONFIG=""
PROTOCOL="${RECSTREAM_SECURITY__PROTOCOL:-PLAINTEXT}"
if [ "$PROTOCOL" != "PLAINTEXT" ]; then
  CLIENT_CONFIG="$(mktemp)"
  trap 'rm -f "$CLIENT_CONFIG"' EXIT
  echo "security.protocol=$PROTOCOL" > "$CLIENT_CONFIG"
  if [ -n "${RECSTREAM_SECURITY__SASL_MECHANISM:-}" ]; then
    case "$RECSTREAM_SECURITY__SASL_MECHANISM" in
      PLAIN) module=org.apache.kafka.common.security.plain.PlainLoginModule ;;
      *) module=org.apache.kafka.common.security.scram.ScramLoginModule ;;
    esac
    {
      echo "sasl.mechanism=$RECSTREAM_SECURITY__SASL_MECHANISM"
      echo "sasl.jaas.config=$module required username=\"${RECSTREAM_SECURITY__USERNAME:?}\" password=\"${RECSTREAM_SECURITY__PASSWORD:?}\";"
    } >> "$CLIENT_CONFIG"
  fi
  if [ -n "${RECSTREAM_SECURITY__SSL_CAFILE:-}" ]; then
    echo "ssl.truststore.type=PEM" >> "$CLIENT_CONFIG"
    echo "ssl.truststore.location=$RECSTREAM_SECURITY__SSL_CAFILE" >> "$CLIENT_CONFIG"
  fi
fi

topics() {
  if [ -n "$CLIENT_CONFIG" ]; then
    "$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" --command-config "$CLIENT_CONFIG" "$@"
  else
    "$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" "$@"
  fi
}

ensure() {  # ensure NAME PARTITIONS
  name="$1"
  want="$2"
  set -- --create --if-not-exists --topic "$name" --partitions "$want" --replication-factor "$RF"
  if [ -n "${MIN_INSYNC_REPLICAS:-}" ]; then
    set -- "$@" --config "min.insync.replicas=$MIN_INSYNC_REPLICAS"
  fi
  topics "$@"
  have="$(topics --describe --topic "$name" | sed -n 's/.*PartitionCount: *\([0-9][0-9]*\).*/\1/p' | head -n 1)"
  if [ "$have" != "$want" ]; then
    echo "create-topics: topic $name has ${have:-?} partitions, $want were asked." >&2
    echo "create-topics: not altering it (see deploy/README.md, 'Scaling out')." >&2
    exit 1
  fi
  echo "create-topics: $name ok ($have partitions, replication factor $RF)"
}

ensure "${RECSTREAM_TOPICS__USER_EVENTS:-user-events}" "$PARTITIONS"
ensure "${RECSTREAM_TOPICS__SEARCH_TEXT:-search-text}" "$PARTITIONS"
ensure "${RECSTREAM_TOPICS__RECOMMENDATIONS:-recommendations}" "$PARTITIONS"
ensure "${RECSTREAM_TOPICS__ITEM_UPDATES:-item-updates}" "$ITEM_UPDATES_PARTITIONS"
# internal: what clicks teach items, keyed by item (agent learn, table item_learned)
ensure "${RECSTREAM_TOPICS__ITEM_FEEDBACK:-item-feedback}" "$PARTITIONS"
ensure "${RECSTREAM_TOPICS__DLQ:-recstream-dlq}" "$DLQ_PARTITIONS"
echo "create-topics: done"
