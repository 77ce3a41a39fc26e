# shellcheck shell=bash
# bench/run --soak DURATION: one mesh row under mixed traffic at a fixed rate for a long
# time, sampled every SOAK_INTERVAL seconds, so a leak or a slow drift shows as a trend
# instead of hiding in a one-shot figure. Per interval, all at once in the client pod:
#
#   - round trips on one open connection (`weft-bench pingpong`, SOAK_PINGPONG_RATE/s),
#   - new connections with one echo each (`weft-bench connect`, SOAK_CONNECT_RATE/s),
#   - HTTP/1.1 requests on one keep-alive connection (`weft-bench http`, SOAK_HTTP_RATE/s),
#   - a bulk stream at a fixed bit rate (`iperf3 -b SOAK_BITRATE`);
#
# then the node proxies' RSS, CPU, threads and open descriptors are read. One CSV line per
# interval goes to bench/results/<time>-soak.csv; the summary (first and last thirds
# compared) to <time>-soak.md.

SOAK_INTERVAL=${SOAK_INTERVAL:-10}
SOAK_PINGPONG_RATE=${SOAK_PINGPONG_RATE:-200}
SOAK_CONNECT_RATE=${SOAK_CONNECT_RATE:-50}
SOAK_HTTP_RATE=${SOAK_HTTP_RATE:-500}
SOAK_BITRATE=${SOAK_BITRATE:-200M}
SOAK_COLUMNS=elapsed_s,rss_kb_n1,rss_kb_n2,cpu_cores,threads,fds,rtt_p50_us,rtt_p99_us,conn_p50_us,conn_p99_us,http_p50_us,http_p99_us,mbit_s,errors

# soak_seconds 90 | 90s | 10m | 2h -> seconds
soak_seconds() {
    local d=$1
    case "$d" in
    *[0-9]s) echo "${d%s}" ;;
    *[0-9]m) echo $((${d%m} * 60)) ;;
    *[0-9]h) echo $((${d%h} * 3600)) ;;
    *[0-9]) echo "$d" ;;
    *) echo "bench/run: --soak takes a duration like 90s, 10m or 1h (got $d)" >&2; return 2 ;;
    esac
}

# A process stat summed over the running proxies: VmRSS of one node, or threads, fds.
soak_proxy_field() { # soak_proxy_field threads|fds
    local pid total=0 n
    for pid in "${PROXY_PIDS[@]}"; do
        case "$1" in
        threads) n=$(awk '/^Threads:/ { print $2 }' "/proc/$pid/status") ;;
        fds) n=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l) ;;
        esac
        total=$((total + n))
    done
    echo "$total"
}

# One interval of mixed traffic; prints the CSV fields after elapsed_s and the RSS.
soak_interval() {
    local dir=$RUN/soak errors=0 secs=$SOAK_INTERVAL
    mkdir -p "$dir"
    nsx "$P-c" "$LOAD" pingpong "$SERVER_IP:$ECHO_PORT" --rate "$SOAK_PINGPONG_RATE" \
        --seconds "$secs" --size 64 >"$dir/rtt.json" 2>>"$dir/errors.log" &
    local rtt=$!
    nsx "$P-c" "$LOAD" connect "$SERVER_IP:$ECHO_PORT" --rate "$SOAK_CONNECT_RATE" \
        --count $((SOAK_CONNECT_RATE * secs)) --size 64 >"$dir/conn.json" 2>>"$dir/errors.log" &
    local conn=$!
    nsx "$P-c" "$LOAD" http "$SERVER_IP:$ECHO_PORT" --rate "$SOAK_HTTP_RATE" \
        --seconds "$secs" >"$dir/http.json" 2>>"$dir/errors.log" &
    local http=$!
    nsx "$P-c" iperf3 -c "$SERVER_IP" -p "$IPERF_PORT" -t "$secs" -b "$SOAK_BITRATE" -J \
        >"$dir/iperf.json" 2>>"$dir/errors.log" &
    local bulk=$!
    local pid
    for pid in $rtt $conn $http $bulk; do
        wait "$pid" || errors=$((errors + 1))
    done
    local conn_errors
    conn_errors=$(jq -r '.errors // 0' "$dir/conn.json" 2>/dev/null || echo 1)
    errors=$((errors + ${conn_errors:-0}))
    printf '%s,%s,%s,%s,%s,%s,%s,%s\n' \
        "$(soak_json "$dir/rtt.json" p50_us)" "$(soak_json "$dir/rtt.json" p99_us)" \
        "$(soak_json "$dir/conn.json" p50_us)" "$(soak_json "$dir/conn.json" p99_us)" \
        "$(soak_json "$dir/http.json" p50_us)" "$(soak_json "$dir/http.json" p99_us)" \
        "$(jq -r '.end.sum_received.bits_per_second / 1e6 | floor' "$dir/iperf.json" 2>/dev/null || echo)" \
        "$errors"
    rm -f "$dir"/*.json
}

soak_json() { jq -r ".$2 // empty" "$1" 2>/dev/null || true; }

# soak ROW DURATION: starts the row's proxies, runs the intervals, writes the results.
soak() {
    local row=$1 total stamp csv hz started now ticks_before ticks_after
    total=$(soak_seconds "$2") || exit 2
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    mkdir -p "$HERE/results"
    csv="$HERE/results/$stamp-soak.csv"
    ROW=$row MESH=1
    mesh_up "$row"
    hz=$(getconf CLK_TCK)
    echo "$SOAK_COLUMNS" >"$csv"
    printf '%s,%s,%s,0,%s,%s,,,,,,,,0\n' 0 "$(proxy_rss_kb n1)" "$(soak_rss n2)" \
        "$(soak_proxy_field threads)" "$(soak_proxy_field fds)" >>"$csv"
    started=$SECONDS
    note "soak: $row for ${total}s, sampled every ${SOAK_INTERVAL}s -> $csv"
    while [ $((SECONDS - started)) -lt "$total" ]; do
        ticks_before=$(proxy_cpu_ticks)
        local t0=$SECONDS fields
        fields=$(soak_interval)
        ticks_after=$(proxy_cpu_ticks)
        now=$((SECONDS - started))
        printf '%s,%s,%s,%s,%s,%s,%s\n' "$now" "$(proxy_rss_kb n1)" "$(soak_rss n2)" \
            "$(calc "($ticks_after - $ticks_before) / $hz / ($SECONDS - $t0 + 0.001)" 3)" \
            "$(soak_proxy_field threads)" "$(soak_proxy_field fds)" "$fields" >>"$csv"
        note "soak: $(tail -1 "$csv")"
    done
    soak_report "$csv" "$row" "$total" >"${csv%.csv}.md"
    cp "$csv" "$HERE/results/latest-soak.csv"
    cp "${csv%.csv}.md" "$HERE/results/latest-soak.md"
    cat "${csv%.csv}.md"
    note "results: ${csv%.csv}.{csv,md}"
}

soak_rss() { [ -n "${PROXY_PID[$1]:-}" ] && proxy_rss_kb "$1" || echo; }

# soak_report CSV ROW SECONDS: the run's settings and, per column, the mean of the first
# and the last third of the intervals and the change between them.
soak_report() {
    local csv=$1
    echo "\`bench/run --soak $3s\` ($2) at $STARTED, commit $COMMIT; capture $CAPTURE."
    echo "Machine: $(machine_line); load average before the run: $LOAD_BEFORE."
    echo "Every ${SOAK_INTERVAL} s: round trips ${SOAK_PINGPONG_RATE}/s, new connections" \
        "${SOAK_CONNECT_RATE}/s, HTTP/1.1 ${SOAK_HTTP_RATE} req/s, iperf3 at ${SOAK_BITRATE}bit/s."
    echo
    echo "| figure | first third | last third | change |"
    echo "|---|---:|---:|---:|"
    awk -F, '
        NR == 1 { for (i = 1; i <= NF; i++) name[i] = $i; next }
        $1 == 0 { idle_n1 = $2; idle_n2 = $3; next }
        { n++; for (i = 2; i <= NF; i++) v[n, i] = $i }
        END {
            third = int(n / 3); if (third < 1) third = 1
            printf "| intervals | %d | | |\n", n
            printf "| RSS right after start (KB; n1 / n2) | %s / %s | | |\n", idle_n1, idle_n2
            for (i = 2; i <= length(name); i++) {
                a = 0; b = 0; ca = 0; cb = 0
                for (k = 1; k <= third; k++) if (v[k, i] != "") { a += v[k, i]; ca++ }
                for (k = n - third + 1; k <= n; k++) if (v[k, i] != "") { b += v[k, i]; cb++ }
                if (ca == 0 || cb == 0) continue
                a /= ca; b /= cb
                printf "| %s | %.2f | %.2f | %+.2f%s |\n", name[i], a, b, b - a,
                    (a != 0 ? sprintf(" (%+.0f%%)", (b - a) * 100 / a) : "")
            }
        }' "$csv"
}
