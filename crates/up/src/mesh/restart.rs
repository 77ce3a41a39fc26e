//! `weft restart`: replacing one process of the running mesh without dropping its traffic.
//! The new process starts with the old one's command line; a waypoint or gateway takes the
//! old one's listening sockets over its hand-off socket (`--handoff-socket`), and once the
//! new process offers them in turn (it is ready), it replaces the old one, which drains and
//! exits on its own (reaped silently: that exit is no crash).

use super::{Mesh, Network};
use crate::process::Process;
use std::path::Path;
use std::time::{Duration, Instant};

/// What `weft restart` restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartTarget {
    /// The pod of the ingress/egress Gateway `namespace/name`.
    Gateway(String),
    /// The pod of the waypoint Gateway `namespace/name`.
    Waypoint(String),
    /// The node proxy of a node (`node-a`, as `weft up` prints it).
    Node(String),
}

impl RestartTarget {
    /// `gateway NS/NAME`, `waypoint NS/NAME`, or a node name.
    ///
    /// # Errors
    /// Anything else, saying what is expected.
    pub fn parse(words: &[String]) -> Result<Self, String> {
        match words {
            [kind, name] if kind == "gateway" => Ok(Self::Gateway(namespaced(name)?)),
            [kind, name] if kind == "waypoint" => Ok(Self::Waypoint(namespaced(name)?)),
            [node] if !node.contains('/') => Ok(Self::Node(node.clone())),
            _ => Err(format!(
                "cannot restart {:?}: expected `gateway NS/NAME`, `waypoint NS/NAME` or a node name",
                words.join(" ")
            )),
        }
    }

    /// The words [`RestartTarget::parse`] reads back.
    #[must_use]
    pub fn words(&self) -> Vec<String> {
        match self {
            Self::Gateway(name) => vec!["gateway".into(), name.clone()],
            Self::Waypoint(name) => vec!["waypoint".into(), name.clone()],
            Self::Node(node) => vec![node.clone()],
        }
    }
}

fn namespaced(name: &str) -> Result<String, String> {
    match name.split_once('/') {
        Some((ns, n)) if !ns.is_empty() && !n.is_empty() && !n.contains('/') => Ok(name.to_owned()),
        _ => Err(format!("{name:?}: expected NAMESPACE/NAME")),
    }
}

/// A process to start in place of a running one.
struct Successor {
    netns: Option<weft_netns::NetNs>,
    label: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    log: std::path::PathBuf,
    handoff: std::path::PathBuf,
}

/// How often the hand-off socket is asked who offers on it.
const POLL: Duration = Duration::from_millis(50);

impl Mesh {
    /// Restarts `target`; returns what happened, or why nothing was changed.
    ///
    /// # Errors
    /// No such component, it cannot hand its listeners over, or the new process did not
    /// take over in time (it is stopped; the old one keeps serving).
    pub fn restart(&mut self, target: &RestartTarget) -> Result<String, String> {
        match target {
            RestartTarget::Gateway(name) | RestartTarget::Waypoint(name) => {
                self.restart_pod_proxy(target, name)
            }
            RestartTarget::Node(node) => self.restart_node(node),
        }
    }

    /// Restarts `node`'s proxy: a second `weft node` with the same command line takes its
    /// listeners (node ports, pod socket, every captured pod's) over.
    fn restart_node(&mut self, node: &str) -> Result<String, String> {
        let (_, site) = (self.node_sites().into_iter())
            .find(|(name, _)| name == node)
            .ok_or_else(|| format!("no node {node:?} in this mesh"))?;
        let layout = self.settings.layout.clone();
        let argv = crate::components::node_argv(
            &self.settings.weft,
            &layout,
            node,
            site.ip,
            self.control_site().ip,
            self.features,
        );
        let successor = Successor {
            netns: site.netns,
            label: format!("weft node {node}"),
            argv,
            env: Vec::new(),
            log: layout.container_log(
                crate::layout::SYSTEM_NAMESPACE,
                &format!("node-{node}"),
                "node",
            ),
            handoff: crate::components::node_handoff_socket(&layout, node),
        };
        let old_pid = (self.nodes.get(node))
            .ok_or_else(|| format!("node {node} is not running"))?
            .pid();
        let new = self.spawn_successor(&successor, old_pid)?;
        let new_pid = new.pid();
        let Some(running) = self.nodes.get_mut(node) else {
            return Err(format!("node {node} was removed meanwhile"));
        };
        let old = std::mem::replace(running, new);
        self.retiring.push(old);
        Ok(format!(
            "restarted {}: pid {new_pid} took over the listeners, pid {old_pid} drains",
            successor.label
        ))
    }

    /// Starts `successor` once the process `old_pid` offers its listeners, and waits until
    /// the successor took them over.
    fn spawn_successor(&self, successor: &Successor, old_pid: u32) -> Result<Process, String> {
        let (label, handoff) = (&successor.label, &successor.handoff);
        if weft_serve::handoff::offerer_pid(handoff).ok().flatten() != Some(old_pid) {
            return Err(format!(
                "{label} (pid {old_pid}) does not offer its listeners on {} (not ready yet, or \
                 a weft without --handoff-socket): not restarted",
                handoff.display()
            ));
        }
        let new = self
            .spawn(
                successor.netns.as_ref(),
                label,
                &successor.argv,
                &successor.env,
                &successor.log,
            )
            .map_err(|e| e.to_string())?;
        self.wait_takeover(new, handoff, old_pid)
    }

    fn restart_pod_proxy(&mut self, target: &RestartTarget, name: &str) -> Result<String, String> {
        let pod = (self.plan.pods.values())
            .find(|pod| match target {
                RestartTarget::Gateway(_) => pod.gateway.as_ref().is_some_and(|g| g.name == name),
                _ => pod.waypoint.as_deref() == Some(name),
            })
            .cloned()
            .ok_or_else(|| format!("no {} {name} runs in this mesh", target.words()[0]))?;
        let container = pod
            .containers
            .first()
            .ok_or_else(|| format!("pod {} has no container", pod.key()))?;
        let handoff = self.settings.layout.handoff_socket(&pod.key());
        let netns = match &self.network {
            Network::Namespaces(cluster) => Some(
                cluster
                    .pod(&pod.cluster_name())
                    .ok_or_else(|| format!("pod {} has no namespace", pod.key()))?
                    .netns
                    .clone(),
            ),
            Network::Loopback(_) => None,
        };
        let argv = self.container_argv(&pod, container);
        let mut env = container.env.clone();
        if netns.is_none() {
            env.extend(self.proxy_env(&pod));
        }
        let log = (self.settings.layout).container_log(&pod.namespace, &pod.name, &container.name);
        let label = format!("{}/{}", pod.key(), container.name);
        fn slot<'m>(mesh: &'m mut Mesh, key: &str) -> Option<&'m mut Process> {
            mesh.pods.get_mut(key)?.first_mut()
        }
        let key = pod.key();
        let old = slot(self, &key).ok_or_else(|| format!("pod {key} is not running"))?;
        let old_pid = old.pid();
        let successor = Successor {
            netns,
            label,
            argv,
            env,
            log,
            handoff,
        };
        let new = self.spawn_successor(&successor, old_pid)?;
        let (new_pid, label) = (new.pid(), successor.label);
        let Some(running) = slot(self, &key) else {
            return Err(format!("pod {key} was removed meanwhile"));
        };
        let old = std::mem::replace(running, new);
        self.retiring.push(old);
        Ok(format!(
            "restarted {label}: pid {new_pid} took over the listeners, pid {old_pid} drains"
        ))
    }

    /// Waits until `new` offers on `handoff` (it took the listeners and is ready); stops it
    /// and explains when it exits or the ready timeout passes first, unless the old process
    /// (`old_pid`) already handed its listeners over: then the new one is all that serves.
    fn wait_takeover(
        &self,
        mut new: Process,
        handoff: &Path,
        old_pid: u32,
    ) -> Result<Process, String> {
        let deadline = Instant::now() + self.settings.ready_timeout;
        let pid = new.pid();
        loop {
            if weft_serve::handoff::offerer_pid(handoff).ok().flatten() == Some(pid) {
                return Ok(new);
            }
            if let Some(status) = new.exit_status() {
                self.stop([&mut new]);
                return Err(format!(
                    "the new {} exited ({status}); the old one keeps serving. Its last log \
                     lines:\n{}",
                    new.label(),
                    new.log_tail(15)
                ));
            }
            if Instant::now() >= deadline {
                let offerer = weft_serve::handoff::offerer_pid(handoff).ok().flatten();
                if offerer != Some(old_pid) {
                    eprintln!(
                        "warning: the new {} took the listeners over but does not offer them \
                         for the next restart yet (on {}); keeping it",
                        new.label(),
                        handoff.display()
                    );
                    return Ok(new);
                }
                self.stop([&mut new]);
                return Err(format!(
                    "the new {} did not take over within {:?}; stopped it, the old one keeps \
                     serving. Its last log lines:\n{}",
                    new.label(),
                    self.settings.ready_timeout,
                    new.log_tail(15)
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Forgets replaced processes that finished draining.
    pub(super) fn reap_retired(&mut self) {
        let layout = &self.settings.layout;
        self.retiring.retain_mut(|process| {
            let done = process.exit_status().is_some();
            if done {
                crate::pid_records::forget(layout, process.pid());
            }
            !done
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn targets_parse_and_print_back() {
        for text in ["gateway shop/web", "waypoint shop/wp", "node-a"] {
            let target = RestartTarget::parse(&words(text)).unwrap();
            assert_eq!(target.words().join(" "), text);
        }
        assert_eq!(
            RestartTarget::parse(&words("node-a")).unwrap(),
            RestartTarget::Node("node-a".into())
        );
        for bad in ["gateway web", "gateway /web", "pod a/b", "", "a/b"] {
            let error = RestartTarget::parse(&words(bad)).unwrap_err();
            assert!(error.contains("expected"), "{bad:?}: {error}");
        }
    }
}
