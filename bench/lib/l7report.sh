# shellcheck shell=bash
# bench/l7's tables (stdout and results/l7-*.{md,json}): the L7 rows and the ingress rows
# (lib/gateway.sh), each with its own figures; uses value_of, ratio, machine_line,
# results_json and readme_update of report.sh.

L7_ROWS=(direct envoy weft-l7 mesh waypoint)
# Comparisons the targets are about, each a column `row / base` (besides each row / the
# table's first row).
L7_COMPARE=(weft-l7:envoy waypoint:mesh)

# key|label|kind — kinds as in report.sh, plus mb (KB shown as MB, no ratio).
L7_FIGURES=(
    "h1_rps|HTTP/1.1 req/s (wrk, 64 connections)|more"
    "h2_rps|HTTP/2 req/s (h2load, 16 connections x 16 streams)|more"
    "h1_cores|proxy CPU during HTTP/1.1 (cores)|cost"
    "h1_per_core|HTTP/1.1 req/s per proxy core|more"
    "h2_cores|proxy CPU during HTTP/2 (cores)|cost"
    "h2_per_core|HTTP/2 req/s per proxy core|more"
    "lat_p50_us|HTTP/1.1 latency p50 at RATE req/s (µs)|less"
    "lat_p99_us|HTTP/1.1 latency p99 at RATE req/s (µs)|less"
    "rss_idle_kb|proxy RSS idle (MB)|mb"
)

# The ingress rows' figures. A fifth field names the first row's figure a ratio falls back
# to when that row has none (the direct path has no TLS: HTTPS latency is compared with
# its HTTP/1.1 latency).
INGRESS_ROWS=(ingress-direct envoy-ingress gateway)
INGRESS_COMPARE=(gateway:envoy-ingress)
INGRESS_FIGURES=(
    "ka_rps|HTTP/1.1 keep-alive req/s (wrk, 64 connections)|more"
    "ka_per_core|HTTP/1.1 keep-alive req/s per proxy core|more"
    "new_rps|HTTP/1.1 new connection per request, req/s (64 clients)|more"
    "new_per_core|HTTP/1.1 new connection per request, req/s per proxy core|more"
    "tls_ka_rps|HTTPS keep-alive req/s (wrk, 64 connections)|more"
    "tls_ka_per_core|HTTPS keep-alive req/s per proxy core|more"
    "tls_new_rps|TLS handshakes/s (HTTPS, new connection per request, 64 clients)|more"
    "tls_new_per_core|TLS handshakes/s per proxy core|more"
    "lat_p50_us|HTTP/1.1 latency p50 at RATE req/s (µs)|less"
    "lat_p99_us|HTTP/1.1 latency p99 at RATE req/s (µs)|less"
    "tls_lat_p50_us|HTTPS latency p50 at RATE req/s (µs; vs direct HTTP/1.1)|less|lat_p50_us"
    "tls_lat_p99_us|HTTPS latency p99 at RATE req/s (µs; vs direct HTTP/1.1)|less|lat_p99_us"
    "rss_idle_kb|proxy RSS idle (MB)|mb"
)

# expand_rows LIST: a --rows list with `ingress` standing for all INGRESS_ROWS.
expand_rows() {
    local ingress
    ingress=$(IFS=,; echo "${INGRESS_ROWS[*]}")
    sed "s/\(^\|,\)ingress\(,\|$\)/\1$ingress\2/" <<<"$1"
}

thousands() { sed ':a; s/\B[0-9]\{3\}\>/,&/; ta' <<<"$1"; } # 2000 -> 2,000

l7_cell() { # l7_cell ROW KEY KIND
    local value
    value=$(value_of "$1" "$2")
    [ -n "$value" ] && [ "$3" = mb ] && value=$(calc "$value / 1024" 1)
    echo "${value:-—}"
}

l7_ratio() { # l7_ratio ROW KEY KIND BASE [BASE_KEY]: like ratio, none for MB; BASE_KEY
    # when BASE has no KEY
    local base_key=$2
    [ -n "${5:-}" ] && [ -z "$(value_of "$4" "$2")" ] && base_key=$5
    if [ "$3" = mb ]; then echo "—"; else ratio "$1" "$2" "$3" "$4" "$base_key"; fi
}

l7_measured() { # l7_measured ROW: whether the row has any figure
    local entry
    for entry in "${!R[@]}"; do
        [ "${entry%%.*}" = "$1" ] && return 0
    done
    return 1
}

# l7_columns ROWS COMPARE (array names): each measured row's value, its ratio to the first
# row, and the COMPARE columns (`row:base`) after their row. Rows that did not run have
# no column.
l7_columns() {
    local -n rows=$1 compare=$2
    local row pair first=${rows[0]}
    for row in "${rows[@]}"; do
        l7_measured "$row" || continue
        echo "cell:$row"
        [ "$row" != "$first" ] && l7_measured "$first" && echo "ratio:$row:$first"
        for pair in "${compare[@]}"; do
            [ "${pair%%:*}" = "$row" ] && l7_measured "${pair#*:}" && echo "ratio:$pair"
        done
    done
}

# l7_markdown_table ROWS COMPARE FIGURES (array names)
l7_markdown_table() {
    local -n figures=$3
    local figure key label kind base_key column what row base header="| figure" rule="|---" line
    local -a columns
    mapfile -t columns < <(l7_columns "$1" "$2")
    [ ${#columns[@]} -gt 0 ] || return 0
    for column in "${columns[@]}"; do
        IFS=: read -r what row base <<<"$column"
        if [ "$what" = cell ]; then header+=" | $row"; else header+=" | $row / $base"; fi
        rule+="|---:"
    done
    echo "$header |"
    echo "$rule|"
    for figure in "${figures[@]}"; do
        IFS='|' read -r key label kind base_key <<<"$figure"
        line="| ${label//RATE/$(thousands "$L7_RATE")}"
        for column in "${columns[@]}"; do
            IFS=: read -r what row base <<<"$column"
            if [ "$what" = cell ]; then
                line+=" | $(l7_cell "$row" "$key" "$kind")"
            else
                line+=" | $(l7_ratio "$row" "$key" "$kind" "$base" "$base_key")"
            fi
        done
        echo "$line |"
    done
}

# l7_results NAME TABLE: writes results/<time>-NAME.md (and latest-NAME.md) with TABLE
# under the run's header; prints the file's path.
l7_results() {
    local file
    file="$HERE/results/$STAMP-$1.md"
    {
        echo "\`bench/l7$([ "$MODE" = quick ] && echo " --quick")\` at $STARTED, commit $COMMIT."
        echo "Machine: $(machine_line); load average before the run: $LOAD_BEFORE."
        echo "Rows asked for: $SELECTED (a row without a column was skipped; the run's notes say why)."
        echo
        echo "$2"
    } >"$file"
    cp "$file" "$HERE/results/latest-$1.md"
    echo "$file"
}

# all_selected ROWS (array name): whether every row of ROWS was asked for.
all_selected() {
    local -n rows=$1
    local row
    for row in "${rows[@]}"; do
        [[ ",$SELECTED," == *",$row,"* ]] || return 1
    done
}

l7_report() {
    local l7_table ingress_table name="l7-$MODE" file
    STAMP=$(date -u +%Y%m%dT%H%M%SZ)
    mkdir -p "$HERE/results"
    l7_table=$(l7_markdown_table L7_ROWS L7_COMPARE L7_FIGURES)
    ingress_table=$(l7_markdown_table INGRESS_ROWS INGRESS_COMPARE INGRESS_FIGURES)
    file=$(l7_results "$name" "$l7_table${ingress_table:+$'\n\n'$ingress_table}")
    results_json >"$HERE/results/$STAMP-$name.json"
    cp "$HERE/results/$STAMP-$name.json" "$HERE/results/latest-$name.json"
    if [ "$MODE" = full ] && all_selected L7_ROWS; then
        readme_update "$(l7_results "$name-l7" "$l7_table")" l7
    fi
    if [ "$MODE" = full ] && all_selected INGRESS_ROWS; then
        readme_update "$(l7_results "$name-ingress" "$ingress_table")" gateway
    fi
    local table
    for table in "$l7_table" "$ingress_table"; do
        [ -n "$table" ] && printf '\n%s\n' "$table"
    done
    echo
    note "results: $file and .json"
}
