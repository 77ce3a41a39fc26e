//! `weft cni`: the node side of pod enrollment in Kubernetes.
//!
//! - [`plugin`]: the CNI plugin `weft-cni` (CNI spec 0.3.x-1.0.0), chained last after the
//!   cluster's own network plugins. On ADD it hands the pod (network namespace, name,
//!   namespace, uid, the addresses the previous plugins assigned) to the node proxy over
//!   its Unix socket ([`client`]); on DEL it releases the pod; its result is the previous
//!   plugins' result, unchanged.
//! - [`conflist`]: adding `weft-cni` to the end of a network configuration list and
//!   taking it out again (pure JSON edits).
//! - [`install`]: `weft cni install` / `uninstall`: the plugin binary in the CNI bin
//!   directory, the chained entry in the cluster's primary configuration file (written
//!   atomically), and a watch that puts it back when the cluster's CNI rewrites the file.
//!
//! The plugin runs once per pod sandbox operation, started by the container runtime: it
//! is synchronous (no async runtime) and does nothing before reading its environment.

pub mod client;
pub mod conflist;
pub mod install;
pub mod plugin;

/// The plugin's `type` in network configurations and its file name in the CNI bin dir.
pub const PLUGIN_TYPE: &str = "weft-cni";

/// Where the node proxy listens for the plugin unless the network configuration says
/// otherwise (`"socket"`).
pub const DEFAULT_SOCKET: &str = "/var/run/weft/cni.sock";
