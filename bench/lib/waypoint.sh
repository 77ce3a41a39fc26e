# shellcheck shell=bash
# The waypoint row of bench/l7: client pod -> n1's node proxy -> HBONE -> waypoint pod
# -> HBONE -> n2's node proxy -> server pod, the client calling the echo Service's VIP.

WAYPOINT_IP=10.250.2.3 # the waypoint pod, on node n2

# waypoint_up: starts the mesh and the waypoint and sets TARGET; returns 1 (with a note)
# when this weft has no waypoint process.
waypoint_up() {
    if ! "$WEFT" waypoint run --help >/dev/null 2>&1; then
        note "waypoint: this weft has no 'weft waypoint run'; row skipped"
        return 1
    fi
    note "waypoint: TODO wire 'weft waypoint run' into the bench"
    return 1
}
