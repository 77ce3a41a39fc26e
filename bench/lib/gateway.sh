# shellcheck shell=bash
# The ingress rows of bench/l7: weft's gateway and Envoy as the ingress reference, on the
# same path, in the `weft up` mesh of lib/waypoint.sh (its namespace `edge` is not in the
# mesh: nothing is captured and the backend is reached over plain TCP, as Envoy reaches it):
#
#   ingress-direct : edge-client-0 (node-a) -> edge-server-0 (node-b), no proxy
#   gateway        : edge-client-0 -> the pod of Gateway edge/edge (node-b, `weft gateway`,
#                    HTTP on 80, HTTPS on 443) -> HTTPRoute -> edge-server-0
#   envoy-ingress  : edge-client-0 -> Envoy in that same pod's network namespace (HTTP on
#                    10080, HTTPS on 10443) -> edge-server-0
#
# (INGRESS_ROWS of lib/l7report.sh.) Both proxies run one worker thread (the gateway's pod
# is written out with TOKIO_WORKER_THREADS=1, Envoy runs with --concurrency 1) and serve
# the same certificate for gateway.bench.test, issued by a CA this script makes with
# openssl. The gateway writes a JSON access-log line per request (weft up starts every
# gateway with --access-log-format json), Envoy none.

GATEWAY_HOST=gateway.bench.test
ENVOY_HTTP_PORT=10080
ENVOY_HTTPS_PORT=10443
NEWCONN_CONNECTIONS=64 # concurrent new-connection clients, as wrk's 64 connections
TARGET_TLS= # ip:port of the row's HTTPS listener (none for ingress-direct)

ingress_selected() { # whether any ingress row was asked for
    local row
    for row in "${INGRESS_ROWS[@]}"; do
        [[ ",$SELECTED," == *",$row,"* ]] && return 0
    done
    return 1
}

# ingress_certificates: a test CA and a P-256 certificate for GATEWAY_HOST it signed, in
# $RUN/tls (ca.pem, server.pem, server.key).
ingress_certificates() {
    local dir="$RUN/tls"
    mkdir -p "$dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=weft-bench-ca -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=$GATEWAY_HOST" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' \
        "$GATEWAY_HOST" >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 2 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
    chmod 644 "$dir"/*
}

indent4() { sed 's/^/    /' "$1"; }

# The pod name weft gives Gateway NAMESPACE/NAME of class CLASS: `<name>-<class>-<hash>`,
# the hash being the low 40 bits of 64-bit FNV-1a of `NAMESPACE/NAME` (as
# crates/api/src/expand/gateway.rs names it), so the pod written here replaces that one.
gateway_pod_name() {
    python3 -c 'import sys
h = 0xcbf29ce484222325
for b in sys.argv[1].encode():
    h = ((h ^ b) * 0x100000001b3) % 2**64
print("%s-%s-%010x" % (sys.argv[2], sys.argv[3], h & 0xffffffffff))' "$1/$2" "$2" "$3"
}

# The edge namespace of the l7 mesh: client, server, the Gateway with an HTTP and an HTTPS
# listener and one HTTPRoute to the server, the certificate as a kubernetes.io/tls Secret,
# and the gateway's pod written out (as weft would run it) to give it one worker thread.
edge_mesh_yaml() {
    cat <<EOF
---
apiVersion: v1
kind: Namespace
metadata: { name: edge }
---
$(echo_deployment edge edge-server node-b "$ECHO_PORT")
---
$(echo_deployment edge edge-client node-a 9000)
---
apiVersion: v1
kind: Service
metadata: { name: edge-server, namespace: edge }
spec:
  selector: { app: edge-server }
  ports: [{ name: http, port: $ECHO_PORT, targetPort: $ECHO_PORT }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: edge, namespace: edge }
spec:
  gatewayClassName: weft
  listeners:
  - { name: http, port: 80, protocol: HTTP }
  - name: https
    port: 443
    protocol: HTTPS
    tls: { mode: Terminate, certificateRefs: [{ name: edge-cert }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: edge, namespace: edge }
spec:
  parentRefs: [{ name: edge }]
  rules: [{ backendRefs: [{ name: edge-server, port: $ECHO_PORT }] }]
---
apiVersion: v1
kind: Secret
metadata: { name: edge-cert, namespace: edge }
type: kubernetes.io/tls
stringData:
  tls.crt: |
$(indent4 "$RUN/tls/server.pem")
  tls.key: |
$(indent4 "$RUN/tls/server.key")
---
apiVersion: v1
kind: Pod
metadata:
  name: $(gateway_pod_name edge edge weft)
  namespace: edge
  labels:
    gateway.networking.k8s.io/gateway-name: edge
    gateway.networking.k8s.io/gateway-class-name: weft
    istio.io/dataplane-mode: none
    istio.io/use-waypoint: none
  ownerReferences:
  - { apiVersion: gateway.networking.k8s.io/v1, kind: Gateway, name: edge, uid: bench-edge, controller: true }
spec:
  nodeName: node-b
  serviceAccountName: edge-weft
  containers:
  - name: gateway
    image: weft
    command: ["weft", "gateway", "--gateway", "edge/edge", "--service-account", "edge-weft"]
    env: [{ name: TOKIO_WORKER_THREADS, value: "1" }]
    ports: [{ containerPort: 80 }, { containerPort: 443 }]
EOF
}

edge_client() { up_exec_as edge/edge-client-0 "$@"; }

# pod_ip NAMESPACE/POD: the pod's address from the table weft up printed.
pod_ip() { awk -v pod="$1" '$2 == pod { print $3; exit }' "$RUN/weft-up.log"; }
# pod_listed NAMESPACE/POD: whether weft up's table has the pod yet (weft up prints the
# table once its waypoints and gateways are ready).
pod_listed() { [ -n "$(pod_ip "$1")" ]; }

# The gateway process of the mesh (read only: weft up owns it).
gateway_pid() { pgrep -f -- "gateway --gateway edge/edge" | head -n1; }

https_answers() {
    "${CLIENT[@]}" curl -sf -o /dev/null --cacert "$RUN/tls/ca.pem" \
        --resolve "$GATEWAY_HOST:${1#*:}:${1%:*}" "https://$GATEWAY_HOST:${1#*:}/"
}

# ingress_row_up ROW: starts what the row needs; sets TARGET (HTTP), TARGET_TLS (HTTPS),
# CLIENT and L7_PID.
ingress_row_up() {
    local server gateway
    up_start || return 1
    CLIENT=(edge_client)
    wait_until 180 "the edge pods in weft up's table (printed once its waypoints and gateways are ready)" \
        pod_listed edge/edge-server-0
    server=$(pod_ip edge/edge-server-0)
    gateway=$(pod_ip "edge/$(gateway_pod_name edge edge weft)")
    [ -n "$gateway" ] || { note "$1: no gateway pod in weft up's table ($RUN/weft-up.log)"; return 1; }
    case "$1" in
    ingress-direct) TARGET=$server:$ECHO_PORT TARGET_TLS= ;;
    gateway)
        TARGET=$gateway:80 TARGET_TLS=$gateway:443
        wait_until 60 "the gateway answering on $TARGET" l7_answers "$TARGET" || return 1
        L7_PID=$(gateway_pid)
        [ -n "$L7_PID" ] || { note "gateway: no 'weft gateway' process found"; return 1; }
        tr '\0' '\n' <"/proc/$L7_PID/environ" | grep -qx TOKIO_WORKER_THREADS=1 ||
            { note "gateway: the process does not have TOKIO_WORKER_THREADS=1"; return 1; }
        PROXY_PIDS=("$L7_PID") # CPU is counted, never killed: weft up owns the process
        ;;
    envoy-ingress)
        TARGET=$gateway:$ENVOY_HTTP_PORT TARGET_TLS=$gateway:$ENVOY_HTTPS_PORT
        envoy_start "$(gateway_netns)" "$server" "$ECHO_PORT" "$TARGET" \
            "$TARGET_TLS:$RUN/tls/server.pem:$RUN/tls/server.key"
        ;;
    esac
    wait_until 30 "$1 answering HTTP on $TARGET (logs: $RUN)" l7_answers "$TARGET" || return 1
    [ -z "$TARGET_TLS" ] ||
        wait_until 30 "$1 answering HTTPS on $TARGET_TLS" https_answers "$TARGET_TLS"
}

# The network namespace of the gateway's pod (from weft up's exec record).
gateway_netns() {
    jq -r .netns "$RUN/up/$UP_PREFIX/exec/edge/$(gateway_pod_name edge edge weft).json"
}

# TLS flags of weft-bench for the row's certificate.
tls_flags() { echo --tls-ca "$RUN/tls/ca.pem" --server-name "$GATEWAY_HOST"; }

wrk_https() {
    "${CLIENT[@]}" wrk -t 2 -c 64 -d "${HTTP_SECONDS}s" "https://$TARGET_TLS/" >"$RUN/wrk-$ROW-tls.txt"
    grep -q 'Non-2xx' "$RUN/wrk-$ROW-tls.txt" && note "$ROW: wrk saw failed requests over TLS"
    awk '/^Requests\/sec:/ { print $2 }' "$RUN/wrk-$ROW-tls.txt"
}

# newconn ADDR [TLS flags]: requests per second, each on a new connection.
newconn() {
    local out addr=$1
    shift
    out=$("${CLIENT[@]}" "$LOAD" newconn "$addr" --seconds "$HTTP_SECONDS" \
        --connections "$NEWCONN_CONNECTIONS" "$@") || return 0
    echo "$out" >"$RUN/newconn-$ROW-$addr.json"
    [ "$(json_field "$out" tls)" = null ] || R[$ROW.tls_negotiated]=$(json_field "$out" tls)
    [ "$(json_field "$out" errors)" = 0 ] || note "$ROW: $(json_field "$out" errors) new-connection requests to $addr failed"
    json_field "$out" per_second
}
newconn_http() { newconn "$TARGET"; }
# shellcheck disable=SC2046
newconn_https() { newconn "$TARGET_TLS" $(tls_flags); }

# latency_at_rate NAME ADDR [TLS flags]: p50/p99 of one keep-alive connection at L7_RATE.
latency_at_rate() {
    local name=$1 addr=$2 out
    shift 2
    out=$("${CLIENT[@]}" "$LOAD" http "$addr" --rate "$L7_RATE" --seconds "$LATENCY_SECONDS" "$@") ||
        { note "$ROW: latency at $L7_RATE req/s to $addr failed"; return 0; }
    R[$ROW.${name}_p50_us]=$(json_field "$out" p50_us)
    R[$ROW.${name}_p99_us]=$(json_field "$out" p99_us)
}

measure_ingress_row() {
    ROW=$1
    note "== $ROW"
    L7_PID=
    if ! ingress_row_up "$ROW"; then
        l7_row_down "$ROW"
        return 0
    fi
    [ -n "$L7_PID" ] && R[$ROW.rss_idle_kb]=$(awk '/^VmRSS:/ { print $2 }' "/proc/$L7_PID/status")
    measure_rate ka wrk_l7 || true
    measure_rate new newconn_http || true
    latency_at_rate lat "$TARGET"
    if [ -n "$TARGET_TLS" ]; then
        measure_rate tls_ka wrk_https || true
        measure_rate tls_new newconn_https || true
        # shellcheck disable=SC2046
        latency_at_rate tls_lat "$TARGET_TLS" $(tls_flags)
    fi
    note "$ROW: keep-alive ${R[$ROW.ka_rps]:-?} req/s, new connections ${R[$ROW.new_rps]:-?}/s, TLS keep-alive ${R[$ROW.tls_ka_rps]:-—} req/s, TLS handshakes ${R[$ROW.tls_new_rps]:-—}/s (${R[$ROW.tls_negotiated]:-—}), p99 at $L7_RATE/s ${R[$ROW.lat_p99_us]:-?} µs (TLS ${R[$ROW.tls_lat_p99_us]:-—} µs)"
    l7_row_down "$ROW"
}
