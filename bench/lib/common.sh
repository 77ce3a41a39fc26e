# shellcheck shell=bash
# Shared by bench/run and bench/profile: tools, build, cleanup.

# Tools: install what is missing from Debian's packages, then fail loudly if any is still
# missing. EXTRA_TOOLS adds command:package pairs (bench/l7: h2load).
ensure_tools() {
    local -a missing=() pairs=(iperf3:iperf3 wrk:wrk jq:jq socat:socat nft:nftables curl:curl
        setpriv:util-linux ip:iproute2 "${EXTRA_TOOLS[@]}")
    local pair
    for pair in "${pairs[@]}"; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return
    note "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >/dev/null; } ||
        true
    for pair in "${pairs[@]}"; do
        command -v "${pair%%:*}" >/dev/null ||
            { echo "bench: ${pair%%:*} is missing and Debian package ${pair#*:} did not install it" >&2; exit 1; }
    done
}
EXTRA_TOOLS=()

# Release binaries go to $CARGO_TARGET_DIR when set (a target dir of its own keeps release
# builds off the debug builds' lock); BENCH_WEFT=PATH measures that weft binary instead
# (e.g. a copy of an earlier build, for an A/B comparison with --no-build).
# The node proxies run NODE_CMD: BENCH_NODE_BIN=PATH (a binary taking `weft node`'s flags),
# by default the `weft-node` binary next to $WEFT when there is one, else `$WEFT node`;
# BENCH_NODE_BIN=weft runs `$WEFT node` even when `weft-node` is there.
build() {
    local target=${CARGO_TARGET_DIR:-$ROOT/target}
    if [ -n "$BUILD" ]; then
        note "building (release): weft, weft-node, weft-bench"
        (cd "$ROOT" && cargo build --release -q -p weft -p weft-node-bin -p weft-bench)
    fi
    WEFT=${BENCH_WEFT:-$target/release/weft}
    LOAD="$target/release/weft-bench"
    [ -x "$WEFT" ] && [ -x "$LOAD" ] || { echo "missing $WEFT or $LOAD (drop --no-build)" >&2; exit 1; }
    node_command "${BENCH_NODE_BIN:-$(dirname "$WEFT")/weft-node}"
}

node_command() { # node_command PATH|weft: sets NODE_CMD
    if [ "$1" != weft ] && [ -x "$1" ]; then
        NODE_CMD=("$1")
    elif [ "$1" = weft ] || [ -z "${BENCH_NODE_BIN:-}" ]; then
        NODE_CMD=("$WEFT" node)
    else
        echo "BENCH_NODE_BIN=$1 is not an executable (give a path, or weft)" >&2
        exit 1
    fi
}

# Sets up the work dir, the topology and the servers; everything goes away on exit.
bench_setup() {
    ensure_tools
    build
    P="wb$$"
    RUN=$(mktemp -d "/tmp/weft-bench.XXXXXX")
    chmod 755 "$RUN"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    CAPTURE=${CAPTURE:-$(capture_mode)}
    topology_up
    servers_start
}

cleanup() {
    set +e
    proxies_stop 2>/dev/null
    declare -F up_stop >/dev/null && up_stop
    topology_down
    jobs -p | xargs -r kill 2>/dev/null
    if [ -n "${BENCH_KEEP:-}" ]; then
        note "kept the work dir $RUN"
    elif [ -n "${RUN:-}" ] && [ -d "$RUN" ]; then
        rm -rf "$RUN"
    fi
}

