#!/usr/bin/env bash
# bench/api: GET /product/{id} requests/s on `tracemart up`, beside nginx
# serving a fixed 200 on this machine in the same run: once as `make run`
# starts it (collector in-process) and once with spans going to a file.
# Prints the figures and the ratios (target: >= 0.6x nginx).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD:-build-release}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DTM_ONLY= >/dev/null
cmake --build "$build" --target tracemart -j2 >/dev/null
. bench/lib.sh
duration=${BENCH_DURATION:-5}
conns=${BENCH_CONNECTIONS:-64}
threads=${BENCH_THREADS:-2}

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# start_up NAME ARGS...: starts `tracemart up` with its own data dir and a
# product to read; sets api_url.
start_up() {
  local name=$1; shift
  local port
  port=$(free_port)
  TRACEMART_LOG_LEVEL=warn "$build/tracemart" up --listen "127.0.0.1:$port" \
    --data-dir "$work/$name" "$@" >/dev/null &
  pids+=($!)
  api_url="http://127.0.0.1:$port"
  wait_http "$api_url/health"
  curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' \
    -d '{"name":"Bench Widget","price":12.5}' "$api_url/product"
}

nginx_port=$(free_port)
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes auto;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      default_type application/json;
      return 200 '{"data":{"productId":"BENCHWIDGET","name":"Bench Widget","price":12.5,"pricingBrackets":[]},"success":true,"message":[]}';
    }
  }
}
CONF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
pids+=($!)
wait_http "http://127.0.0.1:$nginx_port/"

wrk_args=(-t"$threads" -c"$conns" -d"${duration}s")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

# 1. The whole system as `make run` starts it: every request traced, spans
#    stored by the embedded collector on the same two cores.
start_up full --collector-listen 127.0.0.1:0
wrk_rps "$api_url/product/BENCHWIDGET" "${wrk_args[@]}" >/dev/null # warm-up
full=$(wrk_rps "$api_url/product/BENCHWIDGET" "${wrk_args[@]}")
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

# 2. As 1, sampling 10 % of the traces (OTEL_TRACES_SAMPLER), as one would
#    under sustained load.
OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.1 \
  start_up sampled --collector-listen 127.0.0.1:0
wrk_rps "$api_url/product/BENCHWIDGET" "${wrk_args[@]}" >/dev/null
sampled=$(wrk_rps "$api_url/product/BENCHWIDGET" "${wrk_args[@]}")
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

# 3. The API with its spans exported to a file (no collector in-process).
start_up file --collector-listen off
wrk_rps "$api_url/product/BENCHWIDGET" "${wrk_args[@]}" >/dev/null
file=$(wrk_rps "$api_url/product/BENCHWIDGET" "${wrk_args[@]}")
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

# 4. The API alone, tracing switched off (OTEL_SDK_DISABLED).
OTEL_SDK_DISABLED=true start_up untraced --collector-listen off
wrk_rps "$api_url/product/BENCHWIDGET" "${wrk_args[@]}" >/dev/null
untraced=$(wrk_rps "$api_url/product/BENCHWIDGET" "${wrk_args[@]}")
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

ref=$(wrk_rps "http://127.0.0.1:$nginx_port/product/BENCHWIDGET" "${wrk_args[@]}")
echo "GET /product/{id} (target >= 0.6x nginx; nginx serves a fixed 200: $ref req/s)"
echo "  tracemart up, traced into the embedded collector: $full req/s, $(ratio "$full" "$ref")x"
echo "  tracemart up, 10 % of traces sampled:              $sampled req/s, $(ratio "$sampled" "$ref")x"
echo "  tracemart up, spans to a file (collector off):     $file req/s, $(ratio "$file" "$ref")x"
echo "  tracemart up, tracing off (OTEL_SDK_DISABLED):     $untraced req/s, $(ratio "$untraced" "$ref")x"
