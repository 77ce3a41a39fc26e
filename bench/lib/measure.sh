# shellcheck shell=bash
# The figures of one row: the client runs in the client pod, the servers in the server
# pod; with a mesh row the traffic is captured on the way. Results go to R[row.key].

declare -A R

note() { printf '[bench] %s\n' "$*" >&2; }

# wait_until SECONDS WHAT CMD...: polls CMD every 0.1 s.
wait_until() {
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            note "timed out waiting for $what"
            return 1
        fi
        sleep 0.1
    done
}

servers_start() {
    ulimit -n "$(ulimit -Hn)"
    nsx "$P-s" iperf3 -s -p "$IPERF_PORT" >"$RUN/iperf3-server.log" 2>&1 &
    nsx "$P-s" env POD_NAME=server "$WEFT" x echo --port "$ECHO_PORT" \
        >"$RUN/echo-server.log" 2>&1 &
    wait_until 10 "echo server" nsx "$P-s" curl -sf -o /dev/null "http://127.0.0.1:$ECHO_PORT/"
    wait_until 10 "iperf3 server" nsx "$P-s" bash -c "exec 3<>/dev/tcp/127.0.0.1/$IPERF_PORT"
}

calc() { awk "BEGIN { printf \"%.${2:-3}f\", $1 }"; }

# Busy clock ticks of the whole machine (all CPUs: everything but idle and iowait).
machine_busy_ticks() {
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

# Runs CMD while counting CPU; sets CPU_CORES (the proxies' cores used on average) and
# MACHINE_CORES (the whole machine's: clients, servers, proxies, kernel, and anything
# else running on it).
with_cpu() {
    local before after m_before m_after started elapsed hz
    hz=$(getconf CLK_TCK)
    before=$(proxy_cpu_ticks)
    m_before=$(machine_busy_ticks)
    started=$(date +%s.%N)
    "$@"
    elapsed=$(calc "$(date +%s.%N) - $started" 6)
    after=$(proxy_cpu_ticks)
    m_after=$(machine_busy_ticks)
    CPU_CORES=$(calc "($after - $before) / $hz / $elapsed" 4)
    MACHINE_CORES=$(calc "($m_after - $m_before) / $hz / $elapsed" 3)
}

iperf() { # iperf STREAMS -> Gbit/s received
    nsx "$P-c" iperf3 -c "$SERVER_IP" -p "$IPERF_PORT" -t "$TPUT_SECONDS" -P "$1" -J \
        >"$RUN/iperf-$ROW-$1.json"
    jq '.end.sum_received.bits_per_second / 1e9' "$RUN/iperf-$ROW-$1.json"
}

measure_throughput() {
    local gbps
    with_cpu iperf 1 >"$RUN/tput1"
    gbps=$(<"$RUN/tput1")
    R[$ROW.tput1_gbps]=$(calc "$gbps")
    R[$ROW.machine_cores_tput]=$MACHINE_CORES
    R[$ROW.machine_per_gbps]=$(calc "$MACHINE_CORES / $gbps")
    [ -n "$MESH" ] && R[$ROW.cpu_cores_tput]=$CPU_CORES &&
        R[$ROW.cpu_per_gbps]=$(calc "$CPU_CORES / $gbps")
    R[$ROW.tput4_gbps]=$(calc "$(iperf 4)")
    note "$ROW: throughput 1 stream ${R[$ROW.tput1_gbps]} Gbit/s, 4 streams ${R[$ROW.tput4_gbps]} Gbit/s"
}

json_field() { jq -r ".$2" <<<"$1"; }

measure_latency() {
    measure_rtt
    measure_connect
    note "$ROW: round trip p50 ${R[$ROW.rtt_p50_us]} us p99 ${R[$ROW.rtt_p99_us]} us; new connection p50 ${R[$ROW.conn_p50_us]} us"
}

measure_rtt() {
    local out
    out=$(nsx "$P-c" "$LOAD" pingpong "$SERVER_IP:$ECHO_PORT" --rate "$PINGPONG_RATE" \
        --seconds "$LATENCY_SECONDS" --size 64)
    R[$ROW.rtt_p50_us]=$(json_field "$out" p50_us)
    R[$ROW.rtt_p99_us]=$(json_field "$out" p99_us)
    R[$ROW.rtt_p999_us]=$(json_field "$out" p999_us)
}

measure_connect() {
    local out
    out=$(nsx "$P-c" "$LOAD" connect "$SERVER_IP:$ECHO_PORT" --rate "$CONNECT_RATE" \
        --count "$CONNECT_COUNT" --size 64)
    R[$ROW.conn_p50_us]=$(json_field "$out" p50_us)
    R[$ROW.conn_p99_us]=$(json_field "$out" p99_us)
    R[$ROW.conn_errors]=$(json_field "$out" errors)
}

wrk_rps() {
    nsx "$P-c" wrk -t 2 -c 64 -d "${HTTP_SECONDS}s" "http://$SERVER_IP:$ECHO_PORT/" \
        >"$RUN/wrk-$ROW.txt"
    awk '/^Requests\/sec:/ { print $2 }' "$RUN/wrk-$ROW.txt"
}

measure_http() {
    local rps
    with_cpu wrk_rps >"$RUN/rps"
    rps=$(<"$RUN/rps")
    R[$ROW.http_rps]=$(calc "$rps" 0)
    R[$ROW.machine_cores_http]=$MACHINE_CORES
    [ -n "$MESH" ] && R[$ROW.cpu_cores_http]=$CPU_CORES &&
        R[$ROW.cpu_per_krps]=$(calc "$CPU_CORES / ($rps / 1000)" 4)
    note "$ROW: HTTP/1.1 ${R[$ROW.http_rps]} req/s"
}

# Node proxy memory: RSS right after start (certificates loaded, one warm-up connection),
# split into anonymous memory (heap, stacks) and file pages (the binary's code and data
# that were touched), then with HOLD_CONNECTIONS idle connections open through it.
measure_memory_idle() {
    local node
    for node in "${!PROXY_PID[@]}"; do
        R[$ROW.rss_idle_kb_$node]=$(proxy_rss_kb "$node")
        R[$ROW.rss_anon_kb_$node]=$(proxy_rollup_kb "$node" Anonymous)
        R[$ROW.rss_file_kb_$node]=$(calc "${R[$ROW.rss_idle_kb_$node]} - ${R[$ROW.rss_anon_kb_$node]}" 0)
        R[$ROW.threads_$node]=$(awk '/^Threads:/ { print $2 }' "/proc/${PROXY_PID[$node]}/status")
    done
}

# Connections one row can hold: the plaintext proxy needs two descriptors per connection
# (each HBONE node proxy one, plus its pooled tunnels), and the open-files limit cannot
# always be raised (containers).
hold_count() {
    local limit fit per=1
    [ "$ROW" = weft-tcp ] && per=2
    limit=$(ulimit -Hn)
    fit=$(((limit - 256) / per))
    [ "$fit" -lt "$HOLD_CONNECTIONS" ] && echo "$fit" || echo "$HOLD_CONNECTIONS"
}

measure_memory_held() {
    local node line count
    count=$(hold_count)
    R[$ROW.held]=$count
    # The previous row's held connections wait in TIME_WAIT on their ports for a minute.
    nsx "$P-c" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
    coproc HOLD { nsx "$P-c" "$LOAD" hold "$SERVER_IP:$ECHO_PORT" --count "$count"; }
    if ! read -r -t 120 line <&"${HOLD[0]}" || [ "$line" != "ready $count" ]; then
        note "$ROW: could not hold $count connections (got: ${line:-nothing})"
        kill "$HOLD_PID" 2>/dev/null || true
        return 1
    fi
    sleep 1 # let the proxies finish their bookkeeping for the last connections
    for node in "${!PROXY_PID[@]}"; do
        R[$ROW.rss_held_kb_$node]=$(proxy_rss_kb "$node")
        R[$ROW.per_conn_kb_$node]=$(calc "(${R[$ROW.rss_held_kb_$node]} - ${R[$ROW.rss_idle_kb_$node]}) / $count" 1)
    done
    # A look inside while the connections are held (gdb, smaps, a heap profiler's dump):
    # BENCH_HELD_HOOK runs with the proxies' "node=pid" pairs in BENCH_PROXIES.
    if [ -n "${BENCH_HELD_HOOK:-}" ]; then
        BENCH_PROXIES="n1=${PROXY_PID[n1]:-} n2=${PROXY_PID[n2]:-}" bash -c "$BENCH_HELD_HOOK" ||
            note "$ROW: BENCH_HELD_HOOK failed"
    fi
    local to_holder=${HOLD[1]} holder=$HOLD_PID
    exec {to_holder}>&-
    wait "$holder" 2>/dev/null || true
    note "$ROW: RSS idle n1 ${R[$ROW.rss_idle_kb_n1]} KB, with $count connections ${R[$ROW.rss_held_kb_n1]} KB"
}

measure_row() {
    ROW=$1
    MESH=
    [ "$ROW" != direct ] && MESH=1
    note "== $ROW"
    if [ -n "$MESH" ]; then
        mesh_up "$ROW"
        measure_memory_idle
    fi
    if [ "$MODE" != memory ]; then
        measure_throughput
        measure_latency
        measure_http
    fi
    if [ -n "$MESH" ]; then
        measure_memory_held || true
        proxies_stop
    fi
}
