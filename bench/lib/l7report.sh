# shellcheck shell=bash
# bench/l7's table (stdout and results/l7-*.{md,json}); uses value_of, ratio, machine_line,
# results_json and readme_update of report.sh.

L7_ROWS=(direct envoy weft-l7 mesh waypoint)

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

thousands() { sed ':a; s/\B[0-9]\{3\}\>/,&/; ta' <<<"$1"; } # 2000 -> 2,000

l7_cell() { # l7_cell ROW KEY KIND
    local value
    value=$(value_of "$1" "$2")
    [ -n "$value" ] && [ "$3" = mb ] && value=$(calc "$value / 1024" 1)
    echo "${value:-—}"
}

l7_ratio() { # l7_ratio ROW KEY KIND [BASE]: like ratio, none for MB
    if [ "$3" = mb ]; then echo "—"; else ratio "$@"; fi
}

l7_measured() { # l7_measured ROW: whether the row has any figure
    local entry
    for entry in "${!R[@]}"; do
        [ "${entry%%.*}" = "$1" ] && return 0
    done
    return 1
}

# The table's columns: each measured row's value, its ratio to direct, and the two
# comparisons the targets are about (weft-l7 / envoy, waypoint / mesh). Rows that did not
# run have no column.
l7_columns() {
    local row
    for row in "${L7_ROWS[@]}"; do
        l7_measured "$row" || continue
        echo "cell:$row"
        [ "$row" != direct ] && l7_measured direct && echo "ratio:$row:direct"
        [ "$row" = weft-l7 ] && l7_measured envoy && echo "ratio:$row:envoy"
        [ "$row" = waypoint ] && l7_measured mesh && echo "ratio:$row:mesh"
    done
}

l7_markdown_table() {
    local figure key label kind column what row base header="| figure" rule="|---" line
    local -a columns
    mapfile -t columns < <(l7_columns)
    for column in "${columns[@]}"; do
        IFS=: read -r what row base <<<"$column"
        if [ "$what" = cell ]; then header+=" | $row"; else header+=" | $row / $base"; fi
        rule+="|---:"
    done
    echo "$header |"
    echo "$rule|"
    for figure in "${L7_FIGURES[@]}"; do
        IFS='|' read -r key label kind <<<"$figure"
        line="| ${label//RATE/$(thousands "$L7_RATE")}"
        for column in "${columns[@]}"; do
            IFS=: read -r what row base <<<"$column"
            if [ "$what" = cell ]; then
                line+=" | $(l7_cell "$row" "$key" "$kind")"
            else
                line+=" | $(l7_ratio "$row" "$key" "$kind" "$base")"
            fi
        done
        echo "$line |"
    done
}

l7_report() {
    local stamp table name
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    name="l7-$MODE"
    mkdir -p "$HERE/results"
    table=$(l7_markdown_table)
    {
        echo "\`bench/l7$([ "$MODE" = quick ] && echo " --quick")\` at $STARTED, commit $COMMIT."
        echo "Machine: $(machine_line); load average before the run: $LOAD_BEFORE."
        echo "Rows asked for: $SELECTED (a row without a column was skipped; the run's notes say why)."
        echo
        echo "$table"
    } >"$HERE/results/$stamp-$name.md"
    results_json >"$HERE/results/$stamp-$name.json"
    cp "$HERE/results/$stamp-$name.md" "$HERE/results/latest-$name.md"
    cp "$HERE/results/$stamp-$name.json" "$HERE/results/latest-$name.json"
    [ "$MODE" = full ] && [ "$SELECTED" = "$(IFS=,; echo "${L7_ROWS[*]}")" ] &&
        readme_update "$HERE/results/$stamp-$name.md" l7
    echo
    echo "$table"
    echo
    note "results: $HERE/results/$stamp-$name.{md,json}"
}
