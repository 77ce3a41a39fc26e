# shellcheck shell=bash
# Two nodes with one pod each, as network namespaces, in the same shape `weft up` builds
# (crates/netns): an underlay namespace with a bridge, node namespaces on it that route
# each other's pod CIDRs, and pod namespaces with a /32 address behind a veth to their
# node. Nothing is configured in the root namespace; every name starts with $P.
#
#   $P-ul : br0 172.31.250.1/24 ── n1 ══ eth0 $P-n1 (172.31.250.2) ── vp0 ══ eth0 $P-c (10.250.1.2)
#                               └─ n2 ══ eth0 $P-n2 (172.31.250.3) ── vp0 ══ eth0 $P-s (10.250.2.2)

UNDERLAY_NET=172.31.250
CLIENT_IP=10.250.1.2
SERVER_IP=10.250.2.2

topology_namespaces() {
    printf '%s\n' "$P-ul" "$P-n1" "$P-n2" "$P-c" "$P-s"
}

nsx() { # nsx NS CMD...: run CMD inside namespace NS
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

topology_up() {
    ip netns add "$P-ul"
    ip -n "$P-ul" link add br0 type bridge
    ip -n "$P-ul" addr add "$UNDERLAY_NET.1/24" dev br0
    ip -n "$P-ul" link set br0 up
    ip -n "$P-ul" link set lo up
    topology_node 1 10.250.1.0/24 2 10.250.2.0/24
    topology_node 2 10.250.2.0/24 1 10.250.1.0/24
    topology_pod "$P-n1" "$P-c" 10.250.1.1 "$CLIENT_IP"
    topology_pod "$P-n2" "$P-s" 10.250.2.1 "$SERVER_IP"
}

# topology_node N POD_CIDR OTHER_N OTHER_POD_CIDR
topology_node() {
    local n=$1 cidr=$2 other=$3 other_cidr=$4 ns="$P-n$1"
    ip netns add "$ns"
    ip -n "$ns" link add eth0 type veth peer name "n$n" netns "$P-ul"
    ip -n "$P-ul" link set "n$n" master br0 up
    ip -n "$ns" addr add "$UNDERLAY_NET.$((n + 1))/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" route add "$other_cidr" via "$UNDERLAY_NET.$((other + 1))"
    ip -n "$P-ul" route add "$cidr" via "$UNDERLAY_NET.$((n + 1))"
    nsx "$ns" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
        net.ipv4.conf.default.rp_filter=0
}

# topology_pod NODE_NS POD_NS GATEWAY POD_IP
topology_pod() {
    local node=$1 pod=$2 gateway=$3 ip=$4
    ip netns add "$pod"
    ip -n "$node" link add vp0 type veth peer name eth0 netns "$pod"
    ip -n "$node" addr add "$gateway/32" dev vp0
    ip -n "$node" link set vp0 up
    ip -n "$node" route add "$ip/32" dev vp0
    ip -n "$pod" addr add "$ip/32" dev eth0
    ip -n "$pod" link set eth0 up
    ip -n "$pod" link set lo up
    ip -n "$pod" route add "$gateway" dev eth0 scope link
    ip -n "$pod" route add default via "$gateway" dev eth0
}

# Kills every process still inside our namespaces (only ones this run started), then
# deletes the namespaces, which removes their links, routes and nftables tables.
topology_down() {
    local ns pid
    for ns in $(topology_namespaces); do
        [ -e "/run/netns/$ns" ] || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill "$pid" 2>/dev/null || true
        done
    done
    sleep 0.2
    for ns in $(topology_namespaces); do
        [ -e "/run/netns/$ns" ] || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -9 "$pid" 2>/dev/null || true
        done
        ip netns del "$ns" 2>/dev/null || true
    done
}
