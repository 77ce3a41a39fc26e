# shellcheck shell=bash
# The mesh under test: one node proxy per node (NODE_CMD: the `weft-node` binary, or
# `weft node`; see build in lib/common.sh), run from a local config file (workloads only, no
# control plane) with a shared insecure local CA, capturing the client pod's outbound TCP.
#
# Capture modes (CAPTURE):
#   inpod : `weft node --pod-socket` in the node namespace; the pods are announced on the
#           socket and the node proxy opens its listeners and installs its own redirect
#           rules inside each pod (the ambient design). Used when the binary offers it.
#   podns : the same `weft node` process started inside the pod's namespace (uid 1337),
#           `--capture-listeners` on 15001, and a bench-installed nftables rule that sends
#           the pod's outbound TCP there (skipping uid 1337, so the proxy does not capture
#           itself). The data path (outbound listener, SO_ORIGINAL_DST, pooled HBONE,
#           inbound HBONE on <pod ip>:15008) is the same code; only the process placement
#           differs. Fallback while in-pod capture is not in the binary.

PROXY_UID=1337
PROXY_PIDS=()
declare -A PROXY_PID # node name -> pid

b64_ip() { # dotted quad -> base64 of its 4 bytes (proto JSON mapping of `bytes`)
    local a b c d
    IFS=. read -r a b c d <<<"$1"
    printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' "$a" "$b" "$c" "$d")" | base64
}

# mesh_config FILE SERVER_PROTOCOL: client on n1 enrolled (HBONE); the server on n2 speaks
# SERVER_PROTOCOL (HBONE: enrolled; NONE: outside the mesh, so traffic passes through).
mesh_config() {
    local file=$1 server_protocol=$2
    cat >"$file" <<EOF
{"workloads": [
  {"uid": "Kubernetes//Pod/bench/client", "name": "client", "namespace": "bench",
   "serviceAccount": "client", "node": "n1", "tunnelProtocol": "HBONE",
   "addresses": ["$(b64_ip "$CLIENT_IP")"]},
  {"uid": "Kubernetes//Pod/bench/server", "name": "server", "namespace": "bench",
   "serviceAccount": "server", "node": "n2", "tunnelProtocol": "$server_protocol",
   "addresses": ["$(b64_ip "$SERVER_IP")"]}
]}
EOF
}

# `weft node --help` is read whole first: `grep -q` quitting early would end weft with
# SIGPIPE, which pipefail turns into "no such flag".
node_has_flag() { # node_has_flag FLAG
    local help
    help=$("${NODE_CMD[@]}" --help 2>/dev/null) || true
    grep -q -- "$1" <<<"$help"
}

capture_mode() {
    if node_has_flag --pod-socket; then
        echo inpod
    else
        echo podns
    fi
}

# podns_capture POD_NS: redirect the pod's outbound TCP to the proxy's 15001 listener.
podns_capture() {
    nsx "$1" nft -f - <<EOF
table inet weft_bench_capture {
    chain output {
        type nat hook output priority -100; policy accept;
        meta skuid $PROXY_UID return
        ip daddr 127.0.0.0/8 return
        meta l4proto tcp redirect to :15001
    }
}
EOF
}

# proxy_start NODE NETNS CONFIG [extra weft node flags...]
proxy_start() {
    local node=$1 ns=$2 config=$3
    shift 3
    local -a run_as=() limits=()
    [ "$CAPTURE" = podns ] && run_as=(setpriv --reuid "$PROXY_UID" --regid "$PROXY_UID" --clear-groups)
    # One client identity holds all HOLD_CONNECTIONS tunnels, more than the default limit.
    node_has_flag --hbone-max-tunnels-per-identity &&
        limits=(--hbone-max-tunnels-per-identity 65536)
    # `ip netns exec` and `setpriv` exec, so $! is the proxy itself (not a subshell).
    # BENCH_NODE_FLAGS (e.g. "--worker-threads 1") is split into words on purpose.
    # shellcheck disable=SC2086
    ip netns exec "$ns" "${run_as[@]}" "${NODE_CMD[@]}" --local-config "$config" --node "$node" \
        --insecure-local-ca --local-ca-dir "$RUN/ca" --idle-timeout 0 --drain-timeout 1 \
        "${limits[@]}" ${BENCH_NODE_FLAGS:-} "$@" >>"$RUN/proxy-$node.log" 2>&1 &
    local pid=$!
    PROXY_PIDS+=("$pid")
    PROXY_PID[$node]=$pid
    wait_until 20 "node proxy $node ready (log: $RUN/proxy-$node.log)" \
        nsx "$ns" curl -sf -o /dev/null "http://127.0.0.1:15021/healthz/ready"
}

proxies_stop() {
    local pid
    for pid in "${PROXY_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PROXY_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    PROXY_PIDS=()
    PROXY_PID=()
    nsx "$P-c" nft delete table inet weft_bench_capture 2>/dev/null || true
}

# mesh_up ROW: starts the node proxies for weft-tcp or weft-hbone and waits until a
# connection through them works.
mesh_up() {
    local row=$1 protocol=HBONE
    [ "$row" = weft-tcp ] && protocol=NONE
    mesh_config "$RUN/mesh-$row.json" "$protocol"
    mkdir -p "$RUN/ca" && chown "$PROXY_UID:$PROXY_UID" "$RUN/ca" "$RUN"
    case "$CAPTURE" in
    podns)
        proxy_start n1 "$P-c" "$RUN/mesh-$row.json" --capture-listeners
        [ "$protocol" = HBONE ] && proxy_start n2 "$P-s" "$RUN/mesh-$row.json"
        podns_capture "$P-c"
        ;;
    inpod)
        inpod_start n1 "$P-n1" "$P-c" "$CLIENT_IP" "$row" client
        [ "$protocol" = HBONE ] && inpod_start n2 "$P-n2" "$P-s" "$SERVER_IP" "$row" server
        ;;
    esac
    wait_until 20 "a connection through the $row mesh" \
        nsx "$P-c" "$LOAD" pingpong "$SERVER_IP:$ECHO_PORT" --seconds 0.1
}

# inpod_start NODE NODE_NS POD_NS POD_IP ROW POD_NAME: the node proxy in the node namespace with a
# pod socket; the pod is announced as one JSON line ({"op":"add",...}) and the proxy
# answers whether it captured it.
inpod_start() {
    local node=$1 node_ns=$2 pod_ns=$3 pod_ip=$4 row=$5 name=$6 socket="$RUN/pods-$1.sock"
    local answer
    rm -f "$socket" "$socket.pods.json"
    proxy_start "$node" "$node_ns" "$RUN/mesh-$row.json" --pod-socket "$socket"
    answer=$(printf '{"op":"add","uid":"Kubernetes//Pod/bench/%s","name":"%s","namespace":"bench","netns":"/run/netns/%s","ips":["%s"]}\n' \
        "$name" "$name" "$pod_ns" "$pod_ip" | socat -t 5 - "UNIX-CONNECT:$socket")
    echo "pod socket: $answer" >>"$RUN/proxy-$node.log"
    if ! jq -e '.ok and .pod.captured' >/dev/null <<<"$answer"; then
        note "node proxy $node did not capture pod $name: $answer"
        return 1
    fi
}

# CPU time (clock ticks, user + system, all threads) of the running proxies.
proxy_cpu_ticks() {
    local pid total=0 ticks
    for pid in "${PROXY_PIDS[@]}"; do
        ticks=$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat")
        total=$((total + ticks))
    done
    echo "$total"
}

proxy_rss_kb() { # proxy_rss_kb NODE
    awk '/^VmRSS:/ { print $2 }' "/proc/${PROXY_PID[$1]}/status"
}

proxy_rollup_kb() { # proxy_rollup_kb NODE FIELD: one field of smaps_rollup (KB)
    awk -v field="$2:" '$1 == field { print $2 }' "/proc/${PROXY_PID[$1]}/smaps_rollup"
}
