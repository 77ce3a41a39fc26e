# shellcheck shell=bash
# The rows and figures of bench/l7. The client pod sends HTTP to the echo server of the
# server pod: directly (`direct`), through Envoy with one worker (`envoy`), through weft's
# L7 engine with one worker (`weft-l7`); and in a `weft up` mesh (lib/waypoint.sh) through
# the node proxies alone (`mesh`) and through a waypoint between them (`waypoint`). Envoy and
# weft-l7 run in node n2's namespace as plain reverse proxies in front of the server pod.
# Results go to R[row.key].

NODE2_IP=$UNDERLAY_NET.3
ENVOY_PORT=10000
WEFT_L7_PORT=10001
TARGET= # ip:port the client sends HTTP to in the current row
L7_PID= # the row's L7 proxy (Envoy, weft-l7 or the waypoint)
CLIENT=() # how to run a command as the client pod in the current row

client_pod() { nsx "$P-c" "$@"; }

# l7_proxy_start NAME NETNS CMD...: runs CMD in NETNS (log: $RUN/NAME.log); its CPU counts
# as the row's proxy CPU.
l7_proxy_start() {
    local name=$1 ns=$2
    shift 2
    ip netns exec "$ns" "$@" >>"$RUN/$name.log" 2>&1 &
    L7_PID=$!
    PROXY_PIDS+=("$L7_PID")
}

l7_answers() { "${CLIENT[@]}" curl -sf -o /dev/null "http://$1/"; }

# l7_row_up ROW: starts what the row needs and sets TARGET; returns 1 (with a note) when
# this build cannot run the row.
l7_row_up() {
    L7_PID=
    CLIENT=(client_pod)
    case "$1" in
    direct) TARGET=$SERVER_IP:$ECHO_PORT ;;
    envoy)
        envoy_start "$P-n2" "$SERVER_IP" "$ECHO_PORT" "$NODE2_IP:$ENVOY_PORT"
        TARGET=$NODE2_IP:$ENVOY_PORT
        ;;
    weft-l7)
        if ! "$WEFT" x l7-proxy --help >/dev/null 2>&1; then
            note "weft-l7: this weft has no 'weft x l7-proxy'; row skipped"
            return 1
        fi
        l7_proxy_start weft-l7 "$P-n2" "$WEFT" x l7-proxy --listen "$NODE2_IP:$WEFT_L7_PORT" \
            --upstream "$SERVER_IP:$ECHO_PORT" --workers 1
        TARGET=$NODE2_IP:$WEFT_L7_PORT
        ;;
    mesh | waypoint) mesh_row_up "$1" || return 1 ;;
    *) echo "bench/l7: unknown row $1" >&2; exit 2 ;;
    esac
    wait_until 30 "$1 answering HTTP on $TARGET (logs: $RUN)" l7_answers "$TARGET"
}

wrk_l7() {
    "${CLIENT[@]}" wrk -t 2 -c 64 -d "${HTTP_SECONDS}s" "http://$TARGET/" >"$RUN/wrk-$ROW.txt"
    if grep -q 'Non-2xx' "$RUN/wrk-$ROW.txt"; then
        note "$ROW: wrk saw failed requests: $(grep 'Non-2xx' "$RUN/wrk-$ROW.txt")"
    fi
    awk '/^Requests\/sec:/ { print $2 }' "$RUN/wrk-$ROW.txt"
}

# h2load over h2c (prior knowledge): 16 connections with up to 16 streams each.
h2load_l7() {
    "${CLIENT[@]}" h2load -c 16 -m 16 -t 2 -D "$HTTP_SECONDS" "http://$TARGET/" >"$RUN/h2load-$ROW.txt"
    local failed
    failed=$(awk '/^requests:/ { for (i = 1; i < NF; i++) if ($(i + 1) ~ /^failed/) print $i }' \
        "$RUN/h2load-$ROW.txt")
    [ "${failed:-0}" = 0 ] || note "$ROW: h2load saw $failed failed requests"
    awk '/^finished in/ { print $4 }' "$RUN/h2load-$ROW.txt"
}

# measure_rate NAME TOOL: requests/s with TOOL, and the proxy's cores while it ran.
measure_rate() {
    local name=$1 rps
    with_cpu "$2" >"$RUN/rps"
    rps=$(<"$RUN/rps")
    [ -n "$rps" ] || { note "$ROW: $2 gave no figure (see $RUN)"; return 1; }
    R[$ROW.${name}_rps]=$(calc "$rps" 0)
    if [ -n "$L7_PID" ]; then
        if [ "$(calc "$CPU_CORES < 0.01" 0)" = 1 ]; then
            note "$ROW: the proxy used no CPU under load: traffic did not go through it; figures dropped"
            return 2
        fi
        R[$ROW.${name}_cores]=$CPU_CORES
        R[$ROW.${name}_per_core]=$(calc "$rps / $CPU_CORES" 0)
    fi
}

# l7_row_down ROW: stops the row's proxy; the processes of the mesh, waypoint and ingress
# rows belong to weft up, which stops when the run ends.
l7_row_down() {
    case "$1" in
    mesh | waypoint | ingress-direct | gateway) PROXY_PIDS=() ;;
    *) proxies_stop ;;
    esac
}

measure_fixed_rate_latency() {
    local out
    out=$("${CLIENT[@]}" "$LOAD" http "$TARGET" --rate "$L7_RATE" --seconds "$LATENCY_SECONDS")
    R[$ROW.lat_p50_us]=$(json_field "$out" p50_us)
    R[$ROW.lat_p99_us]=$(json_field "$out" p99_us)
}

measure_l7_row() {
    ROW=$1
    note "== $ROW"
    if ! l7_row_up "$ROW"; then
        l7_row_down "$ROW"
        return 0
    fi
    [ -n "$L7_PID" ] && R[$ROW.rss_idle_kb]=$(awk '/^VmRSS:/ { print $2 }' "/proc/$L7_PID/status")
    local status=0
    measure_rate h1 wrk_l7 || status=$?
    if [ "$status" = 2 ]; then
        unset "R[$ROW.h1_rps]" "R[$ROW.rss_idle_kb]"
        l7_row_down "$ROW"
        return 0
    fi
    measure_rate h2 h2load_l7 || true
    measure_fixed_rate_latency
    note "$ROW: HTTP/1.1 ${R[$ROW.h1_rps]:-?} req/s, HTTP/2 ${R[$ROW.h2_rps]:-?} req/s, at $L7_RATE req/s p50 ${R[$ROW.lat_p50_us]} us p99 ${R[$ROW.lat_p99_us]} us"
    l7_row_down "$ROW"
}
