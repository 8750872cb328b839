# Shared helpers for the benchmark scripts (sourced, not run).

# free_port: prints a TCP port nobody listens on (the kernel picks it).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL: waits up to 10 s for URL to answer.
wait_http() {
  for _ in $(seq 100); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench: $1 did not come up" >&2
  return 1
}

# wrk_rps URL [wrk args...]: prints requests/s as an integer.
wrk_rps() {
  local url=$1; shift
  wrk "$@" "$url" | awk '/^Requests\/sec:/ {printf "%d\n", $2}'
}
