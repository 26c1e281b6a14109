#!/usr/bin/env bash
# Runs the README's Quick Start block, exactly as written, against a freshly
# started server on the default address (127.0.0.1:8080) and a temporary
# SQLite database. Fails if any step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v jq >/dev/null || { apt-get update -qq && apt-get install -y -qq jq >/dev/null; }
if curl -s -o /dev/null http://127.0.0.1:8080/; then
    echo "port 8080 is in use; stop whatever listens there first" >&2
    exit 1
fi

cargo build -q -p portcullis
work=$(mktemp -d)
export PORTCULLIS_DATA_DIR="$work" PORTCULLIS_DATABASE_URL="sqlite:$work/portcullis.db"
"${CARGO_TARGET_DIR:-target}/debug/portcullis" serve > "$work/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$work" acme-test.json client.json' EXIT
for _ in $(seq 1 50); do
    curl -s -o /dev/null http://127.0.0.1:8080/ && break
    sleep 0.2
done

# The fenced block between the quickstart markers, without the fences.
sed -n '/<!-- quickstart:begin -->/,/<!-- quickstart:end -->/p' README.md | sed '1,2d;$d' | sed '$d' > "$work/quickstart.sh"
echo "== running the README Quick Start ($(wc -l < "$work/quickstart.sh") lines)"
bash -euo pipefail "$work/quickstart.sh" > "$work/quickstart.out"
tail -n 12 "$work/quickstart.out"
grep -q '"active": true' "$work/quickstart.out" || { echo "introspection did not report the token active" >&2; exit 1; }
echo "Quick Start: OK"
