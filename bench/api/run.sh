#!/usr/bin/env bash
# bench/api: GET /product/{id} requests/s on `tracemart up`, beside nginx
# serving a fixed 200 on this machine in the same run. Prints both and the
# ratio (target: >= 0.6x nginx).
set -euo pipefail
build=${1:-build-release}
. "$(dirname "$0")/../lib.sh"
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

api_port=$(free_port)
TRACEMART_LOG_LEVEL=warn "$build/tracemart" up --listen "127.0.0.1:$api_port" --data-dir "$work/data" >/dev/null &
pids+=($!)
wait_http "http://127.0.0.1:$api_port/health"
curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' \
  -d '{"name":"Bench Widget","price":12.5}' "http://127.0.0.1:$api_port/product"

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
wrk_rps "http://127.0.0.1:$api_port/product/BENCHWIDGET" "${wrk_args[@]}" >/dev/null # warm-up
ours=$(wrk_rps "http://127.0.0.1:$api_port/product/BENCHWIDGET" "${wrk_args[@]}")
ref=$(wrk_rps "http://127.0.0.1:$nginx_port/product/BENCHWIDGET" "${wrk_args[@]}")
ratio=$(awk -v a="$ours" -v b="$ref" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
echo "GET /product/{id}: tracemart ${ours} req/s, nginx fixed 200 ${ref} req/s, ratio ${ratio}x (target >= 0.6x)"
