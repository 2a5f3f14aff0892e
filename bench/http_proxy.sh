#!/usr/bin/env bash
# Side-by-side HTTP/1.1 reverse-proxy benchmark: Switchyard vs HAProxy vs NGINX (and the origin
# hit directly, as a reference), same origin, same client, same core layout, interleaved runs.
#
#   bench/http_proxy.sh                                   # defaults below
#   ROUNDS=3 DURATION=10s CONNS=64 BODY_SIZE=1024 bench/http_proxy.sh
#
# Layout (a 2-core machine has no better split; see bench/README.md):
#   core PROXY_CPU (0): the proxy under test, ONE worker/thread
#   core LOAD_CPU  (1): wrk (1 thread) AND the origin nginx (1 worker) -- they share the core
#
# Environment knobs (all optional):
#   ROUNDS=3            rounds; each round runs every target once, the order rotated per round
#   DURATION=10s        wrk -d per measured run
#   WARMUP=2s           one unmeasured wrk run per target before round 1 (0 = none)
#   CONNS=64            wrk -c (client connections)
#   BODY_SIZE=1024      response body size in bytes served by the built-in origin
#   TARGETS="direct switchyard haproxy nginx"   subset / order of the first round
#   ORIGIN=HOST:PORT    use an existing origin instead of starting nginx (BODY_SIZE then unused)
#   URL_PATH=/          request path
#   SY_FORWARDING=0     0: Switchyard adds no X-Forwarded-For/-Proto/Via (HAProxy and NGINX as
#                       configured here add none either); 1: Switchyard's defaults (adds them)
#   SWITCHYARD=build/switchyard   binary to test
#   SWITCHYARD_REV=     label printed for that binary (default: this repo's HEAD, if it is build/)
#   PROXY_CPU=0 LOAD_CPU=1        taskset cores
#   NOISE_PCT=10        flag a run CONTENDED when >10% of a core went to something else
#   QUIET_WAIT=60       before each run, wait up to this many seconds for both cores to be idle
#                       (< NOISE_PCT busy over 1 s; our own processes are idle between runs)
#   RETRIES=2           re-run a CONTENDED run up to this many times; the last attempt is kept
#   EXTRA_BUDGET=600    seconds that waiting for quiet + re-runs may add in total; once spent,
#                       runs go ahead without waiting or re-running (bounds the total time)
#   KEEP_TMP=0          1: keep the temp dir (configs, raw wrk output, process logs) and print it
#
# Output: a header with versions, one line per run, medians per target, ratios between proxies.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-64}
BODY_SIZE=${BODY_SIZE:-1024}
TARGETS=${TARGETS:-"direct switchyard haproxy nginx"}
ORIGIN=${ORIGIN:-}
URL_PATH=${URL_PATH:-/}
SY_FORWARDING=${SY_FORWARDING:-0}
SWITCHYARD=${SWITCHYARD:-$repo/build/switchyard}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SWITCHYARD_REV=${SWITCHYARD_REV:-}
KEEP_TMP=${KEEP_TMP:-0}
NOISE_PCT=${NOISE_PCT:-10}
QUIET_WAIT=${QUIET_WAIT:-60}
RETRIES=${RETRIES:-2}
EXTRA_BUDGET=${EXTRA_BUDGET:-600}

NGINX_BIN=${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}
HAPROXY_BIN=${HAPROXY_BIN:-$(command -v haproxy || echo /usr/sbin/haproxy)}

die() { echo "http_proxy.sh: $*" >&2; exit 1; }
for tool in wrk taskset curl ss "$NGINX_BIN" "$HAPROXY_BIN" "$SWITCHYARD"; do
  command -v "$tool" >/dev/null 2>&1 || die "missing $tool"
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $BODY_SIZE =~ ^[0-9]+$ ]] || die "BODY_SIZE must be a byte count"
[[ $DURATION =~ ^([0-9]+)([smh]?)$ ]] || die "DURATION must look like 10s, 2m or 1h"
case ${BASH_REMATCH[2]} in
  m) duration_s=$((BASH_REMATCH[1] * 60)) ;;
  h) duration_s=$((BASH_REMATCH[1] * 3600)) ;;
  *) duration_s=${BASH_REMATCH[1]} ;;
esac

SWITCHYARD=$(realpath "$(command -v "$SWITCHYARD")")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-bench.XXXXXX")
chmod 755 "$tmp"   # nginx workers may run as another user and must read the body file
cd "$tmp"          # nothing below writes relative paths, but if it did it would land here

# ---------------------------------------------------------------------------------------------
# process bookkeeping: every process started here is recorded and stopped by the trap
declare -A PID=()       # name -> pid we started (taskset execs the program: same pid)
declare -A WORKPID=()   # name -> pid doing the work (nginx: its single worker)
declare -A LOG=()       # name -> stderr/stdout log
declare -A DEAD=()      # name -> 1 once found dead

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local name pid
  for name in "${!PID[@]}"; do
    pid=${PID[$name]}
    kill -TERM "$pid" 2>/dev/null || true
  done
  for name in "${!PID[@]}"; do
    pid=${PID[$name]}
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "http_proxy.sh: $name (pid $pid) ignored SIGTERM for 5s; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  if [ "$KEEP_TMP" = 1 ]; then
    echo "temp files kept in $tmp" >&2
  else
    rm -rf "$tmp"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

declare -A USED_PORT=()
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 40000))
    [ -z "${USED_PORT[$p]:-}" ] || continue
    if [ -z "$(ss -Htan "( sport = :$p or dport = :$p )" 2>/dev/null)" ]; then
      USED_PORT[$p]=1
      echo "$p"
      return
    fi
  done
  die "no free port found"
}

# start NAME CPU CMD...: run CMD pinned to CPU in the background, output to $tmp/NAME.log
start() {
  local name=$1 cpu=$2
  shift 2
  LOG[$name]=$tmp/$name.log
  taskset -c "$cpu" "$@" >"${LOG[$name]}" 2>&1 &
  PID[$name]=$!
  WORKPID[$name]=$!
}

# wait_http NAME URL: until URL answers 200 (10 s), failing early if NAME died
wait_http() {
  local name=$1 url=$2 code
  for _ in $(seq 100); do
    if ! kill -0 "${PID[$name]}" 2>/dev/null; then
      echo "---- $name log ----" >&2; cat "${LOG[$name]}" >&2
      die "$name exited during start-up"
    fi
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)
    [ "$code" = 200 ] && return 0
    sleep 0.1
  done
  echo "---- $name log ----" >&2; cat "${LOG[$name]}" >&2
  die "$name did not answer 200 on $url within 10 s (last status: ${code:-none})"
}

# nginx runs as master + 1 worker; measure the worker
nginx_worker() {
  local master=$1 w
  for _ in $(seq 50); do
    w=$(ps -o pid= --ppid "$master" | awk 'NR==1{print $1}')
    [ -n "$w" ] && { echo "$w"; return; }
    sleep 0.1
  done
  echo "$master"
}

nginx_common() {   # $1 = name; directives shared by both nginx instances
  local name=$1
  cat <<EOF
daemon off;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $tmp/$name.pid;
error_log $tmp/$name.error.log warn;
$( [ "$(id -u)" = 0 ] && echo "user root root;" )
events { worker_connections 8192; multi_accept on; }
EOF
}
nginx_http_common() {
  local name=$1
  cat <<EOF
  access_log off;
  client_body_temp_path $tmp/$name.tmp/body;
  proxy_temp_path       $tmp/$name.tmp/proxy;
  fastcgi_temp_path     $tmp/$name.tmp/fastcgi;
  uwsgi_temp_path       $tmp/$name.tmp/uwsgi;
  scgi_temp_path        $tmp/$name.tmp/scgi;
  keepalive_timeout 300s;
  keepalive_requests 100000000;
EOF
}

# ---------------------------------------------------------------------------------------------
# header
cpu_model=$(lscpu 2>/dev/null | awk -F: '/^Model name/{gsub(/^[ \t]+/,"",$2); print $2; exit}')
if [ -n "$SWITCHYARD_REV" ]; then
  sy_commit="$SWITCHYARD_REV (as given by SWITCHYARD_REV)"
elif [ "$SWITCHYARD" = "$repo/build/switchyard" ]; then
  sy_commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    sy_commit="$sy_commit + uncommitted changes in the working tree (build may not match any commit)"
  fi
else
  sy_commit="unknown (binary outside $repo/build; set SWITCHYARD_REV to label it)"
fi
echo "== Switchyard reverse-proxy benchmark =="
echo "date:       $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine:    nproc=$(nproc), ${cpu_model:-unknown CPU}, kernel $(uname -r) ($(uname -m))"
echo "switchyard: $("$SWITCHYARD" version 2>&1 | head -1), commit $sy_commit"
echo "            binary $SWITCHYARD sha256 $(sha256sum "$SWITCHYARD" | cut -c1-16) mtime $(date -u -r "$SWITCHYARD" +%Y-%m-%dT%H:%M:%SZ)"
echo "haproxy:    $("$HAPROXY_BIN" -v 2>&1 | head -1)"
echo "nginx:      $("$NGINX_BIN" -v 2>&1 | head -1)"
echo "wrk:        $(wrk -v 2>&1 | head -1)"
echo "workload:   GET $URL_PATH, body ${BODY_SIZE} B, wrk -t1 -c$CONNS -d$DURATION --latency," \
     "$ROUNDS rounds, warm-up $WARMUP per target"
echo "layout:     proxy on cpu $PROXY_CPU (1 worker/thread); wrk + origin share cpu $LOAD_CPU; loopback"
echo "load avg:   $(cut -d' ' -f1-3 /proc/loadavg) (before start)"
echo

# ---------------------------------------------------------------------------------------------
# origin
if [ -n "$ORIGIN" ]; then
  origin_addr=$ORIGIN
  echo "origin:     external $ORIGIN (not started here)"
else
  origin_port=$(free_port)
  origin_addr=127.0.0.1:$origin_port
  status_port=$(free_port)
  mkdir -p "$tmp/www" "$tmp/origin.tmp"
  head -c "$BODY_SIZE" /dev/zero | tr '\0' 'x' >"$tmp/www/body"
  cat >"$tmp/origin.conf" <<EOF
$(nginx_common origin)
http {
$(nginx_http_common origin)
  default_type application/octet-stream;
  open_file_cache max=16 inactive=600s;
  open_file_cache_valid 600s;
  server {
    listen $origin_addr backlog=4096;
    root $tmp/www;
    location / { try_files /body =404; }
  }
  server {   # connection/request counters, to see how many upstream connections a proxy opens
    listen 127.0.0.1:$status_port;
    location / { stub_status; }
  }
}
EOF
  start origin "$LOAD_CPU" "$NGINX_BIN" -p "$tmp" -e "$tmp/origin.error.log" -c "$tmp/origin.conf"
  wait_http origin "http://$origin_addr$URL_PATH"
  WORKPID[origin]=$(nginx_worker "${PID[origin]}")
  got=$(curl -s "http://$origin_addr$URL_PATH" | wc -c)
  [ "$got" = "$BODY_SIZE" ] || die "origin returned $got bytes, expected $BODY_SIZE"
  echo "origin:     nginx on $origin_addr (cpu $LOAD_CPU, 1 worker, keep-alive on)"
fi

declare -A URL=()
for t in $TARGETS; do
  case $t in
    direct)
      URL[direct]="http://$origin_addr$URL_PATH"
      ;;
    switchyard)
      port=$(free_port)
      fwd=""
      [ "$SY_FORWARDING" = 1 ] || fwd="forwarding: { x_forwarded_for: false, x_forwarded_proto: false, via: false }"
      cat >"$tmp/switchyard.yaml" <<EOF
workers: 1
access_log: { enabled: false }
timeouts: { shutdown: 2s }
$fwd
listeners:
  - { name: web, bind: "127.0.0.1:$port", routes: main }
routes:
  main:
    - pool: origin
pools:
  origin:
    max_idle_per_server: 256
    servers: ["$origin_addr"]
EOF
      "$SWITCHYARD" check -c "$tmp/switchyard.yaml" >/dev/null ||
        { "$SWITCHYARD" check -c "$tmp/switchyard.yaml"; die "switchyard rejected its config"; }
      start switchyard "$PROXY_CPU" "$SWITCHYARD" run -c "$tmp/switchyard.yaml"
      URL[switchyard]="http://127.0.0.1:$port$URL_PATH"
      wait_http switchyard "${URL[switchyard]}"
      ;;
    haproxy)
      port=$(free_port)
      cat >"$tmp/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 3s
  timeout client 60s
  timeout server 60s
  timeout http-request 10s
  timeout http-keep-alive 60s
frontend fe
  bind 127.0.0.1:$port
  default_backend be
backend be
  server origin $origin_addr
EOF
      "$HAPROXY_BIN" -c -q -f "$tmp/haproxy.cfg" || die "haproxy rejected its config"
      start haproxy "$PROXY_CPU" "$HAPROXY_BIN" -db -f "$tmp/haproxy.cfg"
      URL[haproxy]="http://127.0.0.1:$port$URL_PATH"
      wait_http haproxy "${URL[haproxy]}"
      ;;
    nginx)
      port=$(free_port)
      mkdir -p "$tmp/nginx.tmp"
      cat >"$tmp/nginx.conf" <<EOF
$(nginx_common nginx)
http {
$(nginx_http_common nginx)
  upstream origin {
    server $origin_addr;
    keepalive 256;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:$port backlog=4096;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
      start nginx "$PROXY_CPU" "$NGINX_BIN" -p "$tmp" -e "$tmp/nginx.error.log" -c "$tmp/nginx.conf"
      URL[nginx]="http://127.0.0.1:$port$URL_PATH"
      wait_http nginx "${URL[nginx]}"
      WORKPID[nginx]=$(nginx_worker "${PID[nginx]}")
      ;;
    *) die "unknown target '$t' (direct switchyard haproxy nginx)" ;;
  esac
  if [ -z "$ORIGIN" ]; then
    got=$(curl -s "${URL[$t]}" | wc -c)
    [ "$got" = "$BODY_SIZE" ] || die "$t returned a $got-byte body, expected $BODY_SIZE"
  fi
  echo "target:     $t -> ${URL[$t]}"
done
echo

# ---------------------------------------------------------------------------------------------
# measurement helpers
clk_tck=$(getconf CLK_TCK)
proc_ticks() {   # utime+stime of a process (all threads), in clock ticks
  [ -r "/proc/$1/stat" ] || { echo 0; return; }
  sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}
cpu_busy() {     # "busy total" jiffies of cpuN from /proc/stat
  awk -v c="cpu$1" '$1==c {t=0; for (i=2;i<=NF;i++) t+=$i; print t-$5-$6, t}' /proc/stat
}
to_us() {        # wrk latency (e.g. 812.00us, 1.23ms, 2.01s) -> microseconds
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000;
    else if (v ~ /m$/) print n * 60e6; else if (v ~ /s$/) print n * 1e6; else print "nan" }'
}
origin_counters() {  # "accepted-connections requests" of the built-in origin, or "0 0"
  if [ -n "${status_port:-}" ]; then
    curl -s --max-time 2 "http://127.0.0.1:$status_port/" | awk 'NR == 3 {print $1, $3; ok = 1} END {if (!ok) print 0, 0}'
  else
    echo 0 0
  fi
}
# wait_quiet: wait (up to QUIET_WAIT s) until neither core is more than NOISE_PCT busy over 1 s
wait_quiet() {
  QUIET_NOTE=""
  ((QUIET_WAIT > 0 && extra_spent < EXTRA_BUDGET)) || return 0
  local waited=0 a0 t0 a1 t1 b0 u0 b1 u1 busy
  while :; do
    read -r a0 t0 < <(cpu_busy "$PROXY_CPU"); read -r a1 t1 < <(cpu_busy "$LOAD_CPU")
    sleep 1
    read -r b0 u0 < <(cpu_busy "$PROXY_CPU"); read -r b1 u1 < <(cpu_busy "$LOAD_CPU")
    busy=$(awk -v a="$a0" -v b="$b0" -v x="$t0" -v y="$u0" -v c="$a1" -v d="$b1" -v p="$t1" -v q="$u1" \
      'BEGIN {m = (y > x) ? 100 * (b - a) / (y - x) : 0; n = (q > p) ? 100 * (d - c) / (q - p) : 0;
              printf "%.0f", (m > n) ? m : n}')
    ((busy > NOISE_PCT)) || break
    if ((waited >= QUIET_WAIT || extra_spent + waited >= EXTRA_BUDGET)); then
      extra_spent=$((extra_spent + waited))
      QUIET_NOTE="not quiet after ${waited}s wait"
      return 0
    fi
    sleep 2
    waited=$((waited + 3))
  done
  extra_spent=$((extra_spent + waited))
  ((waited == 0)) || QUIET_NOTE="waited ${waited}s for quiet"
}
tcp_outsegs() {  # system-wide TCP segments sent (all on loopback here), from /proc/net/snmp
  awk '/^Tcp:/ {n++; if (n == 1) for (i = 1; i <= NF; i++) col[$i] = i; else print $col["OutSegs"]}' /proc/net/snmp
}
measured_pid() {  # the process whose CPU we attribute to the target
  case $1 in
    direct) echo "${WORKPID[origin]:-}" ;;
    *) echo "${WORKPID[$1]}" ;;
  esac
}

results=$tmp/results.tsv
: >"$results"
anomalies=$tmp/anomalies.txt
: >"$anomalies"

# run_one ROUND TARGET DURATION MEASURE(0/1)
run_one() {
  local round=$1 t=$2 dur=$3 measure=$4
  local out=$tmp/wrk.$t.r$round.txt mpid ticks0 ticks1 c0a c0b c1a c1b c0t0 c0t1 c1t0 c1t1
  local acc0 acc1 oreq0 oreq1
  mpid=$(measured_pid "$t")
  ticks0=$( [ -n "$mpid" ] && proc_ticks "$mpid" || echo 0)
  local oticks0 oticks1 wrk_u wrk_s TIMEFORMAT='%3U %3S'
  oticks0=$( [ -n "${WORKPID[origin]:-}" ] && proc_ticks "${WORKPID[origin]}" || echo 0)
  read -r c0a c0t0 < <(cpu_busy "$PROXY_CPU")
  read -r c1a c1t0 < <(cpu_busy "$LOAD_CPU")
  read -r acc0 oreq0 < <(origin_counters)
  local segs0 segs1
  segs0=$(tcp_outsegs)
  local start_ns end_ns
  start_ns=$(date +%s%N)
  { time taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$dur" --latency "${URL[$t]}" >"$out" 2>&1; } \
    2>"$out.cputime" || true
  end_ns=$(date +%s%N)
  ticks1=$( [ -n "$mpid" ] && proc_ticks "$mpid" || echo 0)
  oticks1=$( [ -n "${WORKPID[origin]:-}" ] && proc_ticks "${WORKPID[origin]}" || echo 0)
  read -r wrk_u wrk_s <"$out.cputime" || true
  read -r c0b c0t1 < <(cpu_busy "$PROXY_CPU")
  read -r c1b c1t1 < <(cpu_busy "$LOAD_CPU")
  segs1=$(tcp_outsegs)
  read -r acc1 oreq1 < <(origin_counters)
  [ "$measure" = 1 ] || return 0
  # the second status request's own connection is counted in acc1 (and its request in oreq1)
  local upconns=$((acc1 - acc0 - 1)) oreqs=$((oreq1 - oreq0 - 1))
  [ -n "${status_port:-}" ] || { upconns=-; oreqs=-; }

  local rps p50 p99 non2xx sockerr reqs proc_pct cpu_us_req cpu0 cpu1 oth0 oth1 secs segs_req
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  reqs=$(awk '/requests in/ {print $1}' "$out")
  p50=$(to_us "$(awk '$1=="50%" {print $2}' "$out")")
  p99=$(to_us "$(awk '$1=="99%" {print $2}' "$out")")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
  sockerr=$(awk '/Socket errors:/ {gsub(/,/,""); print $4+$6+$8+$10}' "$out")
  non2xx=${non2xx:-0}; sockerr=${sockerr:-0}; rps=${rps:-0}; reqs=${reqs:-0}
  proc_pct=$(awk -v a="$ticks0" -v b="$ticks1" -v hz="$clk_tck" -v s="$start_ns" -v e="$end_ns" \
    'BEGIN {printf "%.0f", 100 * (b - a) / hz / ((e - s) / 1e9)}')
  cpu_us_req=$(awk -v a="$ticks0" -v b="$ticks1" -v hz="$clk_tck" -v n="$reqs" \
    'BEGIN {if (n > 0) printf "%.2f", (b - a) / hz * 1e6 / n; else print "nan"}')
  segs_req=$(awk -v a="$segs0" -v b="$segs1" -v n="$reqs" 'BEGIN {if (n > 0) printf "%.2f", (b - a) / n; else print "nan"}')
  secs=$(awk -v s="$start_ns" -v e="$end_ns" 'BEGIN {print (e - s) / 1e9}')
  cpu0=$(awk -v a="$c0a" -v b="$c0b" -v x="$c0t0" -v y="$c0t1" 'BEGIN {printf "%.0f", (y > x) ? 100 * (b - a) / (y - x) : 0}')
  cpu1=$(awk -v a="$c1a" -v b="$c1b" -v x="$c1t0" -v y="$c1t1" 'BEGIN {printf "%.0f", (y > x) ? 100 * (b - a) / (y - x) : 0}')
  # "other" = core busy time not explained by the processes meant to run there (other users of
  # the machine, kernel threads, softirq work not charged to a process): a noise indicator
  if [ "$t" = direct ]; then
    oth0=$cpu0
  else
    oth0=$(awk -v c="$cpu0" -v p="$proc_pct" 'BEGIN {v = c - p; printf "%.0f", (v > -0.5 && v < 0.5) ? 0 : v}')
  fi
  oth1=$(awk -v c="$cpu1" -v a="$oticks0" -v b="$oticks1" -v hz="$clk_tck" -v u="${wrk_u:-0}" \
    -v k="${wrk_s:-0}" -v s="$secs" \
    'BEGIN {v = c - 100 * ((b - a) / hz + u + k) / s; printf "%.0f", (v > -0.5 && v < 0.5) ? 0 : v}')
  # results.tsv columns: 1 round, 2 target, 3 req/s, 4 p50 us, 5 p99 us, 6 non2xx, 7 socket errors,
  # 8 wrk requests, 9 proc%, 10 cpu0%, 11 cpu1%, 12 us/req, 13 orig_conn, 14 origin requests,
  # 15 oth0%, 16 oth1%, 17 TCP segments sent per request
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$t" "$rps" "$p50" "$p99" \
    "$non2xx" "$sockerr" "$reqs" "$proc_pct" "$cpu0" "$cpu1" "$cpu_us_req" "$upconns" "$oreqs" \
    "$oth0" "$oth1" "$segs_req" >"$results.pending"
  local note="${QUIET_NOTE:-}"
  LAST_CONTENDED=0
  if ((oth0 > NOISE_PCT || oth1 > NOISE_PCT)); then note="CONTENDED${note:+, }$note"; LAST_CONTENDED=1; fi
  printf '%5s  %-10s %9.0f %8.3f %8.3f %6s %7s %5s%% %6s %5s%% %5s%% %5s%% %5s%% %9s %8s  %s\n' "$round" \
    "$t" "$rps" "$(awk -v v="$p50" 'BEGIN{print v/1000}')" "$(awk -v v="$p99" 'BEGIN{print v/1000}')" \
    "$non2xx" "$sockerr" "$proc_pct" "$cpu_us_req" "$cpu0" "$cpu1" "$oth0" "$oth1" "$upconns" "$segs_req" "$note"

  local problem=""
  if [ "$oreqs" != - ] && { ((oreqs < reqs)) || ((oreqs - reqs > CONNS + 2)); }; then
    problem="origin served $oreqs requests but wrk completed $reqs (expected equal up to the $CONNS in flight)"
  fi
  grep -q '^Requests/sec:' "$out" || problem="$problem${problem:+; }wrk produced no result"
  [ "$non2xx" = 0 ] || problem="$problem${problem:+; }$non2xx non-2xx/3xx responses"
  [ "$sockerr" = 0 ] || problem="$problem${problem:+; }socket errors ($(grep 'Socket errors' "$out" | sed 's/^ *//'))"
  if [ "$t" != direct ] && ! kill -0 "${PID[$t]}" 2>/dev/null; then
    problem="$problem${problem:+; }$t PROCESS DIED"
    DEAD[$t]=1
  fi
  if [ -n "$problem" ]; then
    {
      echo "---- round $round, $t: $problem"
      echo "wrk output:"; sed 's/^/  | /' "$out"
    } >>"$anomalies"
  fi
}

# ---------------------------------------------------------------------------------------------
# runs
read -r -a order <<<"$TARGETS"
n=${#order[@]}
bench_start=$(date +%s)
discarded=0
extra_spent=0
LAST_CONTENDED=0

if [ "$WARMUP" != 0 ]; then
  echo "warm-up: $WARMUP per target (not recorded)"
  for t in "${order[@]}"; do run_one 0 "$t" "$WARMUP" 0; done
  echo
fi

echo "p50/p99 in ms (wrk --latency); proc% = CPU time of the process serving the target (direct:"
echo "the origin worker; otherwise the proxy) as % of one core; us/req = that CPU time per request;"
echo "cpu$PROXY_CPU%/cpu$LOAD_CPU% = whole-core busy (user+system+irq+softirq) during the run;"
echo "oth$PROXY_CPU%/oth$LOAD_CPU% = busy time of that core NOT explained by the proxy (core $PROXY_CPU) or by"
echo "wrk + origin (core $LOAD_CPU): other load on the machine; runs where it exceeds ${NOISE_PCT}% are CONTENDED;"
echo "orig_conn = connections the origin accepted during the run (direct: wrk's own; proxies: upstream"
echo "connections opened -- 0 means the proxy reused its pooled keep-alive connections throughout);"
echo "segs/req = TCP segments sent machine-wide (all loopback) per completed request"
printf '%5s  %-10s %9s %8s %8s %6s %7s %6s %6s %6s %6s %6s %6s %9s %8s  %s\n' round target req/s p50 p99 \
  non2xx sockerr proc% us/req "cpu$PROXY_CPU%" "cpu$LOAD_CPU%" "oth$PROXY_CPU%" "oth$LOAD_CPU%" orig_conn segs/req note
for ((r = 1; r <= ROUNDS; r++)); do
  for ((i = 0; i < n; i++)); do
    t=${order[$(((i + r - 1) % n))]}
    if [ -n "${DEAD[$t]:-}" ]; then
      printf '%5s  %-10s skipped: process died earlier\n' "$r" "$t"
      continue
    fi
    for ((attempt = 0; ; attempt++)); do
      wait_quiet
      run_one "$r" "$t" "$DURATION" 1
      if ((LAST_CONTENDED && attempt < RETRIES && extra_spent < EXTRA_BUDGET)) && [ -z "${DEAD[$t]:-}" ]; then
        extra_spent=$((extra_spent + duration_s))
        printf '%5s  %-10s ^ discarded (contended), re-running\n' "$r" "$t"
        discarded=$((discarded + 1))
        continue
      fi
      cat "$results.pending" >>"$results"
      break
    done
  done
done
bench_end=$(date +%s)
echo

# ---------------------------------------------------------------------------------------------
# summary
median() { sort -g | awk '{a[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
col() { awk -F'\t' -v t="$1" -v c="$2" '$2 == t {print $c}' "$results"; }

declare -A MRPS=() MP50=() MP99=()
echo "== medians over $ROUNDS round(s) ($discarded contended run(s) discarded and re-run; 'contended' below"
echo "   counts the kept runs that were still contended after $RETRIES re-run(s)) =="
printf '%-10s %9s %8s %8s %5s %8s %9s %6s %7s %6s %6s %8s %10s\n' target req/s p50_ms p99_ms runs err_runs \
  contended proc% us/req "cpu$PROXY_CPU%" "cpu$LOAD_CPU%" segs/req rps/direct
for t in "${order[@]}"; do
  runs=$(col "$t" 3 | wc -l)
  [ "$runs" -gt 0 ] || { printf '%-10s no completed runs\n' "$t"; continue; }
  MRPS[$t]=$(col "$t" 3 | median)
  MP50[$t]=$(col "$t" 4 | median)
  MP99[$t]=$(col "$t" 5 | median)
  errruns=$(awk -F'\t' -v t="$t" '$2 == t && ($6 + $7) > 0' "$results" | wc -l)
  noisy=$(awk -F'\t' -v t="$t" -v n="$NOISE_PCT" '$2 == t && ($15 > n || $16 > n)' "$results" | wc -l)
  proc=$(col "$t" 9 | median)
  usreq=$(col "$t" 12 | median)
  c0=$(col "$t" 10 | median)
  c1=$(col "$t" 11 | median)
  segs=$(col "$t" 17 | median)
  vs_direct=$( [ -n "${MRPS[direct]:-}" ] && awk -v a="${MRPS[$t]}" -v b="${MRPS[direct]}" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}' || echo -)
  printf '%-10s %9.0f %8.3f %8.3f %5s %8s %9s %5s%% %7s %5s%% %5s%% %8s %10s\n' "$t" "${MRPS[$t]}" \
    "$(awk -v v="${MP50[$t]}" 'BEGIN{print v/1000}')" "$(awk -v v="${MP99[$t]}" 'BEGIN{print v/1000}')" \
    "$runs" "$errruns" "$noisy" "$proc" "$usreq" "$c0" "$c1" "$segs" "$vs_direct"
done
echo

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}'; }
refs=()
for ref in haproxy nginx; do [ -n "${MRPS[$ref]:-}" ] && refs+=("$ref"); done
if ((${#refs[@]})); then
  echo "== ratios of medians (req/s: >1 = more throughput; p50/p99: <1 = lower latency) =="
  printf '%-10s' proxy
  for ref in "${refs[@]}"; do printf ' %-28s' "vs $ref: rps / p50 / p99"; done
  echo
  for t in switchyard haproxy nginx; do
    [ -n "${MRPS[$t]:-}" ] || continue
    printf '%-10s' "$t"
    for ref in "${refs[@]}"; do
      printf ' %-28s' "$(ratio "${MRPS[$t]}" "${MRPS[$ref]}") / $(ratio "${MP50[$t]}" "${MP50[$ref]}") / $(ratio "${MP99[$t]}" "${MP99[$ref]}")"
    done
    echo
  done
  echo
fi

echo "== anomalies =="
if [ -s "$anomalies" ]; then cat "$anomalies"; else echo "none: every run had 0 non-2xx responses, 0 socket errors, and every proxy stayed up"; fi
echo
echo "== process logs (stdout/stderr of the programs started here; nginx error logs) =="
for name in origin switchyard haproxy nginx; do
  for f in "${LOG[$name]:-}" "$tmp/$name.error.log"; do
    [ -n "$f" ] && [ -f "$f" ] || continue
    lines=$(wc -l <"$f")
    echo "-- $name: $(basename "$f"): $lines line(s)$( ((lines > 20)) && echo ", last 20 shown")"
    tail -n 20 "$f" | sed 's/^/  | /'
  done
  if [ -n "${PID[$name]:-}" ] && ! kill -0 "${PID[$name]}" 2>/dev/null; then
    echo "-- $name: NOT RUNNING at the end of the benchmark"
  fi
done
echo
echo "measured time: $((bench_end - bench_start)) s (of which ~${extra_spent} s waiting for quiet or" \
     "re-running contended runs); total wall time: $SECONDS s"
