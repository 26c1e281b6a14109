#!/usr/bin/env bash
# Lifecycle hub: reconciling BENCH_HUB_USERS (10,000) users against the
# in-process Stripe and Expensify simulators, beside the floor each app's
# rate limits set; on SQLite, then on PostgreSQL when
# PORTCULLIS_BENCH_DATABASE_URL (or PORTCULLIS_TEST_DATABASE_URL) is set.
# Results: bench/results/hub-latest.md (see bench/README.md).
#
# Knobs: BENCH_HUB_USERS (10000), BENCH_HUB_RUNS (3: best and median).
set -euo pipefail
cd "$(dirname "$0")/.."

USERS=${BENCH_HUB_USERS:-10000}
RUNS=${BENCH_HUB_RUNS:-3}
PG_URL=${PORTCULLIS_BENCH_DATABASE_URL:-${PORTCULLIS_TEST_DATABASE_URL:-}}

echo "== building portcullis-bench (release)"
cargo build --release --locked -q -p portcullis-bench
BENCH_BIN=target/release/portcullis-bench

out=bench/results/hub-latest.md
# Written aside and moved into place, so a failed run keeps the last results.
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
    echo "# Lifecycle hub reconciliation"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ) · $(nproc) cores · $(uname -m) · release build"
    echo "· simulators in-process, each seeded with exactly the accounts the hub"
    echo "would have made (no drift: every run must report $USERS linked, no steps)."
    echo "roster read = until the connector's last page; rest = database and planning."
    echo
    echo "== SQLite" >&2
    "$BENCH_BIN" hub --users "$USERS" --runs "$RUNS"
    echo
    if [ -n "$PG_URL" ]; then
        echo "== PostgreSQL" >&2
        "$BENCH_BIN" hub --users "$USERS" --runs "$RUNS" --database-url "$PG_URL"
    else
        echo "PostgreSQL skipped: set PORTCULLIS_BENCH_DATABASE_URL to include it."
    fi
} > "$tmp"
cat "$tmp" > "$out"
echo "== results in $out"
cat "$out"
