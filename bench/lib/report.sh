# shellcheck shell=bash
# Turns R[row.key] into the Markdown table (stdout and results/*.md) and JSON
# (results/*.json).

ROWS=(direct weft-tcp weft-hbone)

# key|label|kind — kind: more (bigger is better: ratio), less (latency: ratio and added
# microseconds), cost (proxy-only figure: no direct value, no ratio); mem (KB shown as MB),
# perconn and count are per node proxy (n1 / n2), no ratio.
FIGURES=(
    "tput1_gbps|throughput, 1 stream (Gbit/s)|more"
    "tput4_gbps|throughput, 4 streams (Gbit/s)|more"
    "rtt_p50_us|round trip p50 (µs)|less"
    "rtt_p99_us|round trip p99 (µs)|less"
    "rtt_p999_us|round trip p99.9 (µs)|less"
    "conn_p50_us|new connection + request p50 (µs)|less"
    "conn_p99_us|new connection + request p99 (µs)|less"
    "http_rps|HTTP/1.1 req/s, 64 connections|more"
    "machine_per_gbps|whole machine CPU, cores per Gbit/s (1 stream)|less"
    "cpu_per_gbps|node proxy CPU, cores per Gbit/s (1 stream)|cost"
    "cpu_per_krps|node proxy CPU, cores per 1,000 req/s|cost"
    "rss_idle_kb|node proxy RSS idle (MB; n1 / n2)|mem"
    "rss_anon_kb|of which anonymous: heap, stacks (MB; n1 / n2)|mem"
    "rss_file_kb|of which file pages: the binary (MB; n1 / n2)|mem"
    "threads|node proxy threads, idle (n1 / n2)|count"
    "rss_held_kb|node proxy RSS, HOLD open connections (MB; n1 / n2)|mem"
    "per_conn_kb|node proxy memory per open connection (KB; n1 / n2)|perconn"
)

machine_line() {
    printf '%s cores, %s, Linux %s' "$(nproc)" \
        "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" "$(uname -r)"
}

value_of() { echo "${R[$1.$2]:-}"; }

# cell ROW KEY KIND: the value cell of one row.
cell() {
    local row=$1 key=$2 kind=$3 a b
    case "$kind" in
    mem | perconn | count)
        a=$(value_of "$row" "${key}_n1")
        b=$(value_of "$row" "${key}_n2")
        [ "$kind" = mem ] && { [ -n "$a" ] && a=$(calc "$a / 1024" 1); [ -n "$b" ] && b=$(calc "$b / 1024" 1); }
        local held
        held=$(value_of "$row" held)
        [ "$key" = rss_held_kb ] && [ -n "$held" ] && [ "$held" != "$HOLD_CONNECTIONS" ] &&
            a="$a [$(printf "%'d" "$held") held]"
        if [ -z "$a" ]; then echo "—"; elif [ -z "$b" ]; then echo "$a"; else echo "$a / $b"; fi
        ;;
    *)
        a=$(value_of "$row" "$key")
        echo "${a:-—}"
        ;;
    esac
}

# ratio ROW KEY KIND [BASE_ROW [BASE_KEY]]: the row's ratio to direct, or to BASE_ROW's
# KEY (or BASE_KEY), and added µs for latencies.
ratio() {
    local row=$1 key=$2 kind=$3 mine base
    mine=$(value_of "$row" "$key")
    base=$(value_of "${4:-direct}" "${5:-$key}")
    if [ -z "$mine" ] || [ -z "$base" ] || [ "$kind" = cost ] || [ "$kind" = mem ] || [ "$kind" = perconn ] || [ "$kind" = count ]; then
        echo "—"
    elif [ "$kind" = less ]; then
        local added
        added=$(calc "$mine - $base" 1)
        printf '%sx (%s%s)' "$(calc "$mine / $base" 2)" "$([ "${added#-}" = "$added" ] && echo +)" "$added"
    else
        printf '%sx' "$(calc "$mine / $base" 2)"
    fi
}

markdown_table() {
    local figure key label kind
    echo "| figure | direct | weft-tcp | weft-tcp / direct | weft-hbone | weft-hbone / direct |"
    echo "|---|---:|---:|---:|---:|---:|"
    for figure in "${FIGURES[@]}"; do
        IFS='|' read -r key label kind <<<"$figure"
        [ "$MODE" = memory ] && [[ " mem perconn count " != *" $kind "* ]] && continue
        label=${label//HOLD/$(printf "%'d" "$HOLD_CONNECTIONS")}
        printf '| %s | %s | %s | %s | %s | %s |\n' "$label" \
            "$(cell direct "$key" "$kind")" \
            "$(cell weft-tcp "$key" "$kind")" "$(ratio weft-tcp "$key" "$kind")" \
            "$(cell weft-hbone "$key" "$kind")" "$(ratio weft-hbone "$key" "$kind")"
    done
}

node_proxy_name() { # the node proxy command, without directories: `weft-node` or `weft node`
    local name
    name=$(basename "${NODE_CMD[0]}")
    echo "$name${NODE_CMD[1]:+ ${NODE_CMD[1]}}"
}

results_json() {
    local entry
    for entry in "${!R[@]}"; do
        printf '%s\t%s\t%s\n' "${entry%%.*}" "${entry#*.}" "${R[$entry]}"
    done | jq -R -s \
        --arg mode "$MODE" --arg capture "$CAPTURE" --arg machine "$(machine_line)" \
        --arg started "$STARTED" --arg load "$LOAD_BEFORE" --arg commit "$COMMIT" \
        --arg node_proxy "$(node_proxy_name)" --argjson hold "$HOLD_CONNECTIONS" '
        { mode: $mode, capture: $capture, node_proxy: $node_proxy, machine: $machine, started: $started,
          load_average_before: $load, commit: $commit, held_connections: $hold,
          rows: (split("\n") | map(select(length > 0) | split("\t"))
                 | reduce .[] as [$row, $key, $value] ({};
                     .[$row][$key] = ($value | tonumber? // $value))) }'
}

report() {
    local stamp table
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    mkdir -p "$HERE/results"
    table=$(markdown_table)
    {
        echo "\`bench/run$([ "$MODE" != full ] && echo " --$MODE")\` at $STARTED, commit $COMMIT."
        echo "Machine: $(machine_line); load average before the run: $LOAD_BEFORE."
        echo "Capture mode: $CAPTURE. Node proxy: \`$(node_proxy_name)\`. Held connections: $HOLD_CONNECTIONS."
        echo
        echo "$table"
    } >"$HERE/results/$stamp-$MODE.md"
    results_json >"$HERE/results/$stamp-$MODE.json"
    cp "$HERE/results/$stamp-$MODE.md" "$HERE/results/latest-$MODE.md"
    cp "$HERE/results/$stamp-$MODE.json" "$HERE/results/latest-$MODE.json"
    [ "$MODE" = full ] && [ "$SELECTED" = direct,weft-tcp,weft-hbone ] &&
        readme_update "$HERE/results/$stamp-$MODE.md" data-plane
    echo
    echo "$table"
    echo
    note "results: $HERE/results/$stamp-$MODE.{md,json}"
}

# readme_update BODY SECTION: a full run of all rows replaces the part of bench/README.md
# between the SECTION's markers (`<!-- SECTION-figures:begin/end -->`) with its Markdown
# (machine line and table); the rest of the file is kept.
readme_update() {
    local readme="$HERE/README.md" begin="<!-- $2-figures:begin -->"
    local end="<!-- $2-figures:end -->"
    grep -qF "$begin" "$readme" 2>/dev/null && grep -qF "$end" "$readme" || return 0
    awk -v begin="$begin" -v end="$end" -v body="$1" '
        $0 == begin { print; while ((getline line < body) > 0) print line; skip = 1; next }
        $0 == end { skip = 0 }
        !skip { print }' "$readme" >"$readme.new" && mv "$readme.new" "$readme"
    note "updated the figures in $readme"
}
