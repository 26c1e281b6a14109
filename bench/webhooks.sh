#!/usr/bin/env bash
# Webhook delivery: deliveries per second beside the receiver's own POST
# ceiling, and the lag from commit to delivery at a steady rate of changes,
# alone and beside an endpoint that never answers; on SQLite, then on
# PostgreSQL when PORTCULLIS_BENCH_DATABASE_URL (or
# PORTCULLIS_TEST_DATABASE_URL) is set.
# Results: bench/results/webhooks-latest.md (see bench/README.md).
#
# Knobs: BENCH_WEBHOOK_EVENTS (20000 queued), BENCH_WEBHOOK_RATE (500
# changes/s), BENCH_WEBHOOK_SECONDS (10 per lag run).
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${BENCH_WEBHOOK_EVENTS:-20000}
RATE=${BENCH_WEBHOOK_RATE:-500}
SECONDS_PER_RUN=${BENCH_WEBHOOK_SECONDS:-10}
PG_URL=${PORTCULLIS_BENCH_DATABASE_URL:-${PORTCULLIS_TEST_DATABASE_URL:-}}

echo "== building portcullis-bench (release)"
cargo build --release --locked -q -p portcullis-bench
BENCH_BIN=target/release/portcullis-bench
args=(webhooks --events "$EVENTS" --rate "$RATE" --seconds "$SECONDS_PER_RUN")

out=bench/results/webhooks-latest.md
# Written aside and moved into place, so a failed run keeps the last results.
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
    echo "# Webhook delivery"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ) · $(nproc) cores · $(uname -m) · release build"
    echo "· in-process: changes committed through the services, the delivery worker,"
    echo "and an axum receiver on loopback share the cores. Lag = arrival minus the"
    echo "event's timestamp (written in the change's transaction)."
    echo
    echo "== SQLite" >&2
    "$BENCH_BIN" "${args[@]}"
    echo
    if [ -n "$PG_URL" ]; then
        echo "== PostgreSQL" >&2
        "$BENCH_BIN" "${args[@]}" --database-url "$PG_URL"
    else
        echo "PostgreSQL skipped: set PORTCULLIS_BENCH_DATABASE_URL to include it."
    fi
} > "$tmp"
cat "$tmp" > "$out"
echo "== results in $out"
cat "$out"
