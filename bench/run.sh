#!/usr/bin/env bash
# Portcullis benchmarks: a release build under wrk over keep-alive loopback
# connections, beside the ceilings that bound it, and beside oidc-provider.
# Results: bench/results/latest.md (see bench/README.md).
#
# Knobs: BENCH_SECONDS (per load run, default 10), BENCH_CONNECTIONS (64),
# BENCH_API_CONNECTIONS (16, for the users API), BENCH_LOGIN_CONNECTIONS (8,
# for password logins), BENCH_CODES (codes minted for the code exchange run,
# default 3000 per second of BENCH_SECONDS), BENCH_USERS (100000),
# BENCH_ROUTES (10000 environments with custom domains), BENCH_PORT (18080), BENCH_OP_PORT (18090).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN=${BENCH_SECONDS:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
# The Management API is measured for latency at a dashboard-like concurrency.
API_CONNECTIONS=${BENCH_API_CONNECTIONS:-16}
# Password logins queue for the Argon2id pool (one hash per core): a few
# connections keep it busy; more would only add queueing latency.
LOGIN_CONNECTIONS=${BENCH_LOGIN_CONNECTIONS:-8}
CODES=${BENCH_CODES:-$((3000 * SECONDS_PER_RUN))}
USERS=${BENCH_USERS:-100000}
ROUTES=${BENCH_ROUTES:-10000}
PORT=${BENCH_PORT:-18080}
OP_PORT=${BENCH_OP_PORT:-18090}
RESOURCE=https://api.bench.test/invoices
# Sign-in: a user, a first-party web application and an API that allows
# offline access (refresh tokens), all in bench-es256.
SIGNIN_EMAIL=signin@example.com
SIGNIN_PASSWORD="correct horse battery staple"
REDIRECT_URI=https://app.bench.test/callback
OFFLINE_RESOURCE=https://api.bench.test/accounts

# Debian packages for what is missing (node and npm usually come with the machine).
missing=()
for tool in wrk jq curl node npm; do
    command -v "$tool" >/dev/null 2>&1 && continue
    case $tool in node) missing+=(nodejs) ;; *) missing+=("$tool") ;; esac
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== building release binaries"
cargo build --release --locked -q -p portcullis -p portcullis-bench
BIN=target/release/portcullis
BENCH_BIN=target/release/portcullis-bench

echo "== installing oidc-provider (npm)"
(cd bench/oidc-provider && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

work=$(mktemp -d)
server=""
op=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    [ -n "$op" ] && kill "$op" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

export PORTCULLIS_DATA_DIR="$work" PORTCULLIS_DATABASE_URL="sqlite:$work/bench.db"
export PORTCULLIS_LISTEN="127.0.0.1:$PORT" PORTCULLIS_LOG=warn
# The benchmarks measure throughput, not the per-IP and per-account limiter:
# every request here comes from one address and the logins from one account.
export PORTCULLIS_RATE_LIMITS=false
PORTCULLIS_MASTER_KEY=$(head -c 32 /dev/urandom | base64)
export PORTCULLIS_MASTER_KEY

"$BIN" migrate >/dev/null
"$BIN" serve 2>"$work/serve.log" &
server=$!
for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
    sleep 0.1
done
rss_kb() { awk "/^$2:/ {print \$2}" "/proc/$1/status"; }
idle_rss=$(rss_kb "$server" VmRSS)

host() { echo "$1.localhost:$PORT"; }
basic() { printf 'Basic %s' "$(printf '%s:%s' "$1" "$2" | base64 -w0)"; }

# env_setup HANDLE ALGORITHM [KEY_SIZE]: an environment whose primary key has
# that algorithm, an API with one scope, and a client granted it. Prints
# "client_id client_secret admin_id admin_secret".
env_setup() {
    local handle=$1 algorithm=$2 key_size=${3:-}
    local env_url="http://127.0.0.1:$PORT" h
    h=$(host "$handle")
    "$BIN" env create "$handle" --key-algorithm es256 --json > "$work/$handle.json"
    local admin_id admin_secret token
    admin_id=$(jq -r .client_id "$work/$handle.json")
    admin_secret=$(jq -r .client_secret "$work/$handle.json")
    token=$(curl -sf -H "Host: $h" -u "$admin_id:$admin_secret" -d grant_type=client_credentials \
        -d "resource=http://$h/api" "$env_url/oauth/token" | jq -r .access_token)
    local api=(-sf -H "Host: $h" -H "Authorization: Bearer $token" -H "Content-Type: application/vnd.api+json")
    if [ "$algorithm" != es256 ]; then
        local attributes="{\"algorithm\": \"$algorithm\"}"
        [ -n "$key_size" ] && attributes="{\"algorithm\": \"$algorithm\", \"key_size\": $key_size}"
        curl "${api[@]}" "$env_url/api/signing-keys" -d "{\"data\": {\"type\": \"signing_key\",
            \"attributes\": $attributes}}" > /dev/null
    fi
    local api_row client
    api_row=$(curl "${api[@]}" "$env_url/api/resource-servers" -d '{"data": {"type": "resource_server",
        "attributes": {"name": "Invoices", "identifier": "'$RESOURCE'", "token_ttl": 900}}}' | jq -r .data.id)
    curl "${api[@]}" "$env_url/api/scopes" -d '{"data": {"type": "scope", "attributes": {"name": "read:invoices"},
        "relationships": {"resource_server": {"data": {"type": "resource_server", "id": "'$api_row'"}}}}}' >/dev/null
    client=$(curl "${api[@]}" "$env_url/api/clients" -d '{"data": {"type": "client",
        "attributes": {"name": "Bench", "grant_types": ["client_credentials"]}}}')
    curl "${api[@]}" "$env_url/api/client-resource-server-grants" -d '{"data": {"type": "client_resource_server_grant",
        "attributes": {"allowed_scopes": ["read:invoices"]},
        "relationships": {"client": {"data": {"type": "client", "id": "'"$(jq -r .data.id <<<"$client")"'"}},
                          "resource_server": {"data": {"type": "resource_server", "id": "'$api_row'"}}}}}' >/dev/null
    echo "$(jq -r .data.attributes.client_id <<<"$client") $(jq -r .meta.client_secret <<<"$client") $admin_id $admin_secret"
}

# load NAME URL CONNECTIONS [wrk script]: runs wrk with the BENCH_* request
# variables set by the caller; appends "NAME|req/s|p50|p99" to the results.
: > "$work/rows"
load() {
    local name=$1 url=$2 connections=$3 script=${4:-bench/wrk/request.lua}
    wrk -t2 -c1 -d1s -s "$script" "$url" >/dev/null 2>&1 || true # warm-up
    local out
    out=$(wrk -t2 -c"$connections" -d"${SECONDS_PER_RUN}s" --latency -s "$script" "$url")
    if grep -q "Non-2xx" <<<"$out"; then
        echo "!! $name: $(grep Non-2xx <<<"$out")" >&2
        echo "$out" >&2
        echo "!! the server's log ends with:" >&2
        tail -n 20 "$work/serve.log" >&2
        exit 1
    fi
    local rps p50 p99
    rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    local rss=""
    [ -n "$server" ] && [ -z "${op:-}" ] && rss="$(( $(rss_kb "$server" VmRSS) / 1024 )) MiB"
    echo "$name|$rps|$p50|$p99|$connections|$rss" >> "$work/rows"
    printf '   %-44s %8s req/s  p50 %-9s p99 %-9s %s\n' "$name" "$rps" "$p50" "$p99" "$rss"
}
rate_of() { awk -F'|' -v n="$1" '$1 == n {print $2}' "$work/rows"; }

# rust_load NAME CONCURRENCY SUBCOMMAND ARGS...: a portcullis-bench load
# generator (for what wrk cannot drive); appends a row as load() does.
rust_load() {
    local name=$1 connections=$2 out rps p50 p99 rss=""
    shift 2
    if ! out=$("$BENCH_BIN" "$@" --concurrency "$connections" --seconds "$SECONDS_PER_RUN"); then
        echo "!! $name failed" >&2
        exit 1
    fi
    read -r rps p50 p99 <<<"$out"
    rss="$(( $(rss_kb "$server" VmRSS) / 1024 )) MiB"
    echo "$name|$rps|$p50|$p99|$connections|$rss" >> "$work/rows"
    printf '   %-44s %8s req/s  p50 %-9s p99 %-9s %s\n' "$name" "$rps" "$p50" "$p99" "$rss"
}

token_load() { # NAME HANDLE CLIENT_ID SECRET
    BENCH_METHOD=POST BENCH_HOST=$(host "$2") BENCH_AUTH=$(basic "$3" "$4") \
    BENCH_CONTENT_TYPE=application/x-www-form-urlencoded \
    BENCH_BODY="grant_type=client_credentials&resource=$RESOURCE&scope=read:invoices" \
        load "$1" "http://127.0.0.1:$PORT/oauth/token" "$CONNECTIONS"
}

echo "== client_credentials per key algorithm (wrk, $CONNECTIONS connections, ${SECONDS_PER_RUN}s)"
declare -A ceiling
for spec in es256 eddsa rs256:2048 rs256:4096; do
    algorithm=${spec%%:*}
    size=${spec#*:}
    [ "$size" = "$spec" ] && size=""
    handle="bench-${algorithm}${size:+-$size}"
    read -r cid csecret admin_id admin_secret <<<"$(env_setup "$handle" "$algorithm" "$size")"
    echo "$handle $cid $csecret $admin_id $admin_secret" >> "$work/envs"
    ceiling[$handle]=$("$BENCH_BIN" sign-ceiling --handle "$handle" --threads 2 --seconds 5)
    echo "   raw signing ceiling of $handle's key (2 threads): ${ceiling[$handle]}/s"
    token_load "client_credentials $handle" "$handle" "$cid" "$csecret"
done

echo "== oidc-provider (npm, node:cluster with one worker per core), same client and RS256 key sizes"
for bits in 2048 4096; do
    node bench/oidc-provider/server.mjs "$OP_PORT" "$bits" 2>"$work/op.log" &
    op=$!
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "http://127.0.0.1:$OP_PORT/.well-known/openid-configuration" && break
        sleep 0.1
    done
    BENCH_METHOD=POST BENCH_HOST="127.0.0.1:$OP_PORT" \
    BENCH_AUTH=$(basic bench bench-secret-0123456789abcdef0123456789abcdef) \
    BENCH_CONTENT_TYPE=application/x-www-form-urlencoded \
    BENCH_BODY="grant_type=client_credentials&resource=$RESOURCE&scope=read:invoices" \
        load "oidc-provider client_credentials rs256-$bits" "http://127.0.0.1:$OP_PORT/token" "$CONNECTIONS"
    kill "$op"; wait "$op" 2>/dev/null || true; op=""
done

read -r _ cid csecret admin_id admin_secret < <(grep '^bench-es256 ' "$work/envs")
h=$(host bench-es256)
access=$(curl -sf -H "Host: $h" -u "$cid:$csecret" -d grant_type=client_credentials \
    -d "resource=$RESOURCE" "http://127.0.0.1:$PORT/oauth/token" | jq -r .access_token)

echo "== introspection and JWKS"
verify_ceiling=$("$BENCH_BIN" verify-ceiling --handle bench-es256 --threads 2 --seconds 5)
echo "   raw verification ceiling of bench-es256's key (2 threads): ${verify_ceiling}/s"
BENCH_METHOD=POST BENCH_HOST=$h BENCH_AUTH=$(basic "$cid" "$csecret") \
BENCH_CONTENT_TYPE=application/x-www-form-urlencoded BENCH_BODY="token=$access" \
    load "introspection (JWT, es256)" "http://127.0.0.1:$PORT/oauth/introspect" "$CONNECTIONS"
BENCH_HOST=$h load "JWKS" "http://127.0.0.1:$PORT/.well-known/jwks.json" "$CONNECTIONS"

# Routing: the same cached answer at the default host and at a custom domain,
# before and after 10,000 more environments with active custom domains. The
# domain index reloads at most every 5 s, hence the pauses.
ROUTE_DOMAIN=auth.bench.test
echo "== routing with $ROUTES environments and custom domains"
"$BENCH_BIN" seed-domains --handle bench-es256 --domain "$ROUTE_DOMAIN" >/dev/null
sleep 6
BENCH_HOST=$h load "JWKS, default host (4 environments)" "http://127.0.0.1:$PORT/.well-known/jwks.json" "$CONNECTIONS"
BENCH_HOST="$ROUTE_DOMAIN:$PORT" load "JWKS, custom domain (1 domain)" \
    "http://127.0.0.1:$PORT/.well-known/jwks.json" "$CONNECTIONS"
"$BENCH_BIN" seed-domains --count "$ROUTES" >/dev/null
sleep 6
BENCH_HOST=$h load "JWKS, default host (+$ROUTES environments)" \
    "http://127.0.0.1:$PORT/.well-known/jwks.json" "$CONNECTIONS"
BENCH_HOST="$ROUTE_DOMAIN:$PORT" load "JWKS, custom domain (+$ROUTES domains)" \
    "http://127.0.0.1:$PORT/.well-known/jwks.json" "$CONNECTIONS"

echo "== users API with $USERS users"
"$BENCH_BIN" seed-users --handle bench-es256 --count "$USERS" >/dev/null
management=$(curl -sf -H "Host: $h" -u "$admin_id:$admin_secret" -d grant_type=client_credentials \
    -d "resource=http://$h/api" "http://127.0.0.1:$PORT/oauth/token" | jq -r .access_token)
BENCH_HOST=$h BENCH_AUTH="Bearer $management" \
    load "GET /api/users (first page)" "http://127.0.0.1:$PORT/api/users" "$API_CONNECTIONS"
BENCH_HOST=$h BENCH_AUTH="Bearer $management" \
    load "GET /api/users?filter[email]=…" \
    "http://127.0.0.1:$PORT/api/users?filter%5Bemail%5D=BENCH-54321%40example.com" "$API_CONNECTIONS"
BENCH_HOST=$h BENCH_AUTH="Bearer $management" \
    load "GET /api/users?sort=-email (keyset)" "http://127.0.0.1:$PORT/api/users?sort=-email" "$API_CONNECTIONS"
BENCH_HOST=$h BENCH_AUTH="Bearer $management" \
    load "POST /api/users (Argon2id)" "http://127.0.0.1:$PORT/api/users" 4 bench/wrk/create-user.lua

echo "== sign-in on bench-es256: password logins, refresh and code grants"
api=(-sf -H "Host: $h" -H "Authorization: Bearer $management" -H "Content-Type: application/vnd.api+json")
curl "${api[@]}" "http://127.0.0.1:$PORT/api/users" -d '{"data": {"type": "user", "attributes": {
    "email": "'"$SIGNIN_EMAIL"'", "password": "'"$SIGNIN_PASSWORD"'",
    "password_confirmation": "'"$SIGNIN_PASSWORD"'"}}}' >/dev/null
accounts_api=$(curl "${api[@]}" "http://127.0.0.1:$PORT/api/resource-servers" -d '{"data": {"type": "resource_server",
    "attributes": {"name": "Accounts", "identifier": "'$OFFLINE_RESOURCE'", "token_ttl": 900,
                   "allow_offline_access": true}}}' | jq -r .data.id)
web=$(curl "${api[@]}" "http://127.0.0.1:$PORT/api/clients" -d '{"data": {"type": "client",
    "attributes": {"name": "Bench web app", "redirect_uris": ["'$REDIRECT_URI'"],
                   "grant_types": ["authorization_code", "refresh_token"], "first_party": true}}}')
web_id=$(jq -r .data.attributes.client_id <<<"$web")
web_secret=$(jq -r .meta.client_secret <<<"$web")
# User tokens for an API need the client's grant on it.
curl "${api[@]}" "http://127.0.0.1:$PORT/api/client-resource-server-grants" -d '{"data": {
    "type": "client_resource_server_grant", "attributes": {"allowed_scopes": null}, "relationships": {
    "client": {"data": {"type": "client", "id": "'"$(jq -r .data.id <<<"$web")"'"}},
    "resource_server": {"data": {"type": "resource_server", "id": "'"$accounts_api"'"}}}}}' >/dev/null

# The login form's CSRF token is double-submit: the cookie GET /login sets
# and the form's hidden field carry the same value, and POST /login wants both.
curl -sf -D "$work/login.headers" -o "$work/login.html" -H "Host: $h" "http://127.0.0.1:$PORT/login"
csrf=$(sed -n 's/^set-cookie: portcullis_csrf=\([^;]*\).*/\1/Ip' "$work/login.headers" | tr -d '\r')
csrf_field=$(grep -o 'name="csrf" value="[^"]*"' "$work/login.html" | sed 's/.*value="//; s/"$//')
if [ -z "$csrf" ] || [ "$csrf" != "$csrf_field" ]; then
    echo "!! GET /login: CSRF cookie '$csrf' and form field '$csrf_field' differ" >&2
    exit 1
fi
login_body="csrf=$csrf&email=$(jq -rn --arg v "$SIGNIN_EMAIL" '$v|@uri')&password=$(jq -rn --arg v "$SIGNIN_PASSWORD" '$v|@uri')"
status=$(curl -s -D "$work/login.headers" -o /dev/null -w '%{http_code}' -H "Host: $h" \
    -H "Cookie: portcullis_csrf=$csrf" --data "$login_body" "http://127.0.0.1:$PORT/login")
if [ "$status" != 200 ] || ! grep -qi '^set-cookie: portcullis_session=' "$work/login.headers"; then
    echo "!! POST /login answered $status without a session cookie" >&2
    exit 1
fi
# The ceiling is measured just before and just after the logins, and the
# higher of the two kept: anything else running on the machine only lowers it.
cores=$(nproc) # the server's Argon2id pool has one thread per available core
argon2_before=$("$BENCH_BIN" argon2-ceiling --threads "$cores" --seconds 5)
# No session cookie is sent back (wrk keeps none): every login starts a session.
BENCH_METHOD=POST BENCH_HOST=$h BENCH_COOKIE="portcullis_csrf=$csrf" \
BENCH_CONTENT_TYPE=application/x-www-form-urlencoded BENCH_BODY="$login_body" \
    load "POST /login (password, Argon2id)" "http://127.0.0.1:$PORT/login" "$LOGIN_CONNECTIONS"
argon2_after=$("$BENCH_BIN" argon2-ceiling --threads "$cores" --seconds 5)
argon2_ceiling=$(awk -v a="$argon2_before" -v b="$argon2_after" 'BEGIN { print (a > b) ? a : b }')
echo "   raw Argon2id verification ceiling ($cores threads): $argon2_before/s before, $argon2_after/s after"

signin=(--url "http://127.0.0.1:$PORT" --host "$h" --client-id="$web_id" --client-secret="$web_secret"
    --redirect-uri "$REDIRECT_URI" --resource "$OFFLINE_RESOURCE" --scope "openid offline_access"
    --email "$SIGNIN_EMAIL" --password "$SIGNIN_PASSWORD")
rust_load "refresh_token bench-es256 †" "$CONNECTIONS" load-refresh "${signin[@]}"
rust_load "authorization_code bench-es256 †" "$CONNECTIONS" load-code "${signin[@]}" --codes "$CODES"

peak_rss=$(rss_kb "$server" VmHWM)

# --- report ------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
out=bench/results/latest.md
{
    echo "# Benchmark results"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ) · $(nproc) cores · $(uname -m) · release build · SQLite (WAL)"
    echo "· wrk 2 threads, keep-alive connections, ${SECONDS_PER_RUN}s per run"
    echo "(the load generator shares the machine with the server)."
    echo "† portcullis-bench load-* instead of wrk (tokio tasks over reqwest keep-alive"
    echo "connections; connections = concurrent requests): refresh_token with each task"
    echo "chaining its own rotating token, authorization_code redeeming codes minted"
    echo "before the timed run. Rate limits off (PORTCULLIS_RATE_LIMITS=false)."
    echo
    echo "| Benchmark | connections | req/s | p50 | p99 | server RSS after |"
    echo "|---|---:|---:|---:|---:|---:|"
    awk -F'|' '{printf "| %s | %s | %s | %s | %s | %s |\n", $1, $5, $2, $3, $4, $6}' "$work/rows"
    echo
    echo "## Ratios"
    echo
    echo "| Work | raw ceiling | endpoint | share of ceiling |"
    echo "|---|---:|---:|---:|"
    for handle in bench-es256 bench-eddsa bench-rs256-2048 bench-rs256-4096; do
        r=$(rate_of "client_credentials $handle")
        echo "| ${handle#bench-}, client_credentials | ${ceiling[$handle]}/s (sign, 2 threads) | $r/s | $(ratio "$r" "${ceiling[$handle]}") |"
    done
    for host in "default host" "custom domain"; do
        if [ "$host" = "default host" ]; then before="4 environments"; after="+$ROUTES environments"
        else before="1 domain"; after="+$ROUTES domains"; fi
        b=$(rate_of "JWKS, $host ($before)")
        a=$(rate_of "JWKS, $host ($after)")
        echo "| routing at a $host, with $ROUTES more environments and domains | $b/s (before) | $a/s | $(ratio "$a" "$b") |"
    done
    r=$(rate_of "introspection (JWT, es256)")
    echo "| es256, introspection | ${verify_ceiling}/s (verify, 2 threads) | $r/s | $(ratio "$r" "$verify_ceiling") |"
    r=$(rate_of "POST /login (password, Argon2id)")
    echo "| argon2id, password login | ${argon2_ceiling}/s (verify, $cores threads) | $r/s | $(ratio "$r" "$argon2_ceiling") |"
    echo
    echo "## Sign-in targets"
    echo
    meets() { awk -v a="$1" -v b="$2" 'BEGIN { print (a >= b) ? "yes" : "**no**" }'; }
    login_share=$(ratio "$(rate_of "POST /login (password, Argon2id)")" "$argon2_ceiling")
    refresh=$(rate_of "refresh_token bench-es256 †")
    echo "| Measurement | target | measured | met |"
    echo "|---|---:|---:|---:|"
    echo "| password logins / Argon2id ceiling | ≥ 0.90 | $login_share | $(meets "$login_share" 0.90) |"
    echo "| refresh_token grants, ES256 | ≥ 5000/s | $refresh/s | $(meets "$refresh" 5000) |"
    echo "| authorization_code exchanges, ES256 | — | $(rate_of "authorization_code bench-es256 †")/s | |"
    echo
    echo "| Algorithm | Portcullis | oidc-provider | Portcullis / oidc-provider |"
    echo "|---|---:|---:|---:|"
    for bits in 2048 4096; do
        p=$(rate_of "client_credentials bench-rs256-$bits")
        o=$(rate_of "oidc-provider client_credentials rs256-$bits")
        echo "| RS256 ($bits-bit) | $p/s | $o/s | $(ratio "$p" "$o") |"
    done
    echo
    echo "## Memory"
    echo
    echo "| | RSS |"
    echo "|---|---:|"
    echo "| idle, after start | $((idle_rss / 1024)) MiB |"
    echo "| peak, after all runs | $((peak_rss / 1024)) MiB |"
} > "$out"
echo "== results in $out"
cat "$out"
