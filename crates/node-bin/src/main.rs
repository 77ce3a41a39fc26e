//! `weft-node`: the node proxy as a binary of its own. It takes exactly `weft node`'s
//! flags (both parse them with `weft_node::cli`) and behaves the same, but links only the
//! node proxy's crates: the one `weft` binary also carries the control plane, Kubernetes
//! client, waypoint, gateway, dashboard and installer, and the kernel maps much of that
//! code into every node proxy's memory. Meant for the node DaemonSet (the install's image
//! still runs `weft node`: docs/kubernetes.md, "The node proxy binary").

fn main() -> std::process::ExitCode {
    weft_node::cli::main()
}
