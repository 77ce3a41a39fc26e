# Sourced by scripts/test and scripts/up: installs the Debian packages weft's network
# namespace features and tests need, when they are missing.
ensure_packages() {
  local need=()
  command -v ip >/dev/null || need+=(iproute2)
  command -v nft >/dev/null || need+=(nftables)
  command -v iptables >/dev/null || need+=(iptables)
  command -v tcpdump >/dev/null || need+=(tcpdump)
  # the waypoint end-to-end tests make requests from inside pods with curl
  command -v curl >/dev/null || need+=(curl)
  # the dashboard's browser test renders the page in headless Chromium
  command -v chromium >/dev/null || need+=(chromium)
  # the CNI tests chain weft-cni after the reference bridge and host-local plugins
  [ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
  [ ${#need[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "missing packages (install them as root): ${need[*]}" >&2
    return 1
  fi
}
