# shellcheck shell=bash
# The mesh rows of bench/l7, run in a `weft up` mesh (control plane, a node proxy per node,
# pods as network namespaces, the waypoint Gateway as its own pod), since the waypoint gets
# its configuration and certificate from the control plane:
#
#   mesh     : client-0 (node-a) -> node proxy -> HBONE -> node proxy (node-b) -> server-0,
#              through Service echo-mesh (`istio.io/use-waypoint: none`): the L4 mesh alone
#   waypoint : client-0 -> node proxy -> HBONE -> waypoint pod -> HBONE -> node proxy ->
#              server-0, through Service echo (the namespace uses waypoint `waypoint`)
#
# The tools run as pod client-0 (`weft exec`); both Services select the same server pod.

UP_PREFIX=wbl7
UP_PID=
WAYPOINT_VIP=10.96.200.10 # Service echo: through the waypoint
MESH_VIP=10.96.200.11     # Service echo-mesh: node proxies only

# echo_deployment NAMESPACE NAME NODE PORT: a Deployment of one pod NAME-0 on NODE running
# `weft x echo` on PORT.
echo_deployment() {
    cat <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: { name: $2, namespace: $1 }
spec:
  selector: { matchLabels: { app: $2 } }
  template:
    metadata: { labels: { app: $2 } }
    spec:
      nodeName: $3
      containers:
      - name: echo
        image: weft
        command: ["weft", "x", "echo"]
        args: ["--port", "$4", "--name", "$2-0"]
        ports: [{ containerPort: $4 }]
EOF
}

# The mesh: two nodes, client on node-a, server on node-b (the waypoint pod goes where the
# expansion puts it).
l7_mesh_yaml() {
    cat <<EOF
apiVersion: v1
kind: Node
metadata: { name: node-a }
spec: { podCIDR: 10.244.1.0/24 }
---
apiVersion: v1
kind: Node
metadata: { name: node-b }
spec: { podCIDR: 10.244.2.0/24 }
---
apiVersion: v1
kind: Namespace
metadata: { name: istio-system }
---
apiVersion: v1
kind: Namespace
metadata:
  name: bench
  labels: { istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: waypoint, namespace: bench, labels: { istio.io/waypoint-for: service } }
spec:
  gatewayClassName: istio-waypoint
  listeners:
  - { name: mesh, port: 15008, protocol: HBONE }
---
$(echo_deployment bench server node-b "$ECHO_PORT")
---
$(echo_deployment bench client node-a 9000)
---
apiVersion: v1
kind: Service
metadata: { name: echo, namespace: bench }
spec:
  clusterIP: $WAYPOINT_VIP
  selector: { app: server }
  ports: [{ name: http, port: $ECHO_PORT, targetPort: $ECHO_PORT }]
---
apiVersion: v1
kind: Service
metadata: { name: echo-mesh, namespace: bench, labels: { istio.io/use-waypoint: none } }
spec:
  clusterIP: $MESH_VIP
  selector: { app: server }
  ports: [{ name: http, port: $ECHO_PORT, targetPort: $ECHO_PORT }]
EOF
}

# up_exec_as NAMESPACE/POD CMD...: runs CMD as that pod of the mesh.
up_exec_as() {
    local pod=$1
    shift
    "$WEFT" exec --prefix "$UP_PREFIX" --state-dir "$RUN/up" "$pod" -- "$@"
}
up_exec() { up_exec_as bench/client-0 "$@"; }

# up_start: starts the `weft up` mesh once for the mesh, waypoint and ingress rows (with
# the edge namespace of lib/gateway.sh when an ingress row was asked for) and waits until
# the client reaches the server through the node proxies.
up_start() {
    [ -n "$UP_PID" ] && return 0
    mkdir -p "$RUN/l7-mesh" "$RUN/up"
    l7_mesh_yaml >"$RUN/l7-mesh/mesh.yaml"
    if ingress_selected; then
        ingress_certificates
        edge_mesh_yaml >"$RUN/l7-mesh/edge.yaml"
    fi
    "$WEFT" up --prefix "$UP_PREFIX" --state-dir "$RUN/up" "$RUN/l7-mesh" >"$RUN/weft-up.log" 2>&1 &
    UP_PID=$!
    wait_until 120 "weft up's mesh answering (log: $RUN/weft-up.log)" \
        up_exec curl -sf -o /dev/null "http://$MESH_VIP:$ECHO_PORT/"
}

# up_stop: SIGTERM makes weft up remove its namespaces and processes.
up_stop() {
    [ -n "$UP_PID" ] || return 0
    kill -TERM "$UP_PID" 2>/dev/null || true
    wait "$UP_PID" 2>/dev/null || true
    UP_PID=
}

# The waypoint process of the mesh (read only: weft up owns it).
waypoint_pid() {
    pgrep -f -- "waypoint run .*--gateway bench/waypoint" | head -n1
}

# mesh_row_up ROW: the mesh or waypoint row; sets TARGET (and L7_PID for the waypoint).
mesh_row_up() {
    if ! "$WEFT" waypoint run --help >/dev/null 2>&1; then
        note "$1: this weft has no 'weft waypoint run'; row skipped"
        return 1
    fi
    up_start || return 1
    CLIENT=(up_exec)
    if [ "$1" = mesh ]; then
        TARGET=$MESH_VIP:$ECHO_PORT
        return 0
    fi
    TARGET=$WAYPOINT_VIP:$ECHO_PORT
    wait_until 60 "the waypoint answering on $TARGET (log: $RUN/weft-up.log)" \
        up_exec curl -sf -o /dev/null "http://$TARGET/"
    L7_PID=$(waypoint_pid)
    [ -n "$L7_PID" ] || { note "waypoint: no 'weft waypoint run' process found"; return 1; }
    PROXY_PIDS=("$L7_PID") # CPU is counted, never killed: weft up owns the process
}
