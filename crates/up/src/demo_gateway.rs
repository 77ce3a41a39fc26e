//! The ingress step of `weft up --demo` (network namespaces only): this machine's shell calls
//! the shop gateway at its pod address, as a user would with `curl`, and the gateway routes
//! each request by the HTTPRoute `catalog-split` (90% catalog-v1, 10% catalog-v2) over HBONE
//! with its own identity, which catalog's policy admits.
//!
//! When another `weft up` on this machine routes the same address (meshes with the same pod
//! CIDRs), the call is made from this mesh's underlay namespace instead, which reaches every
//! pod of this mesh. In explicit mode the step is left out: the tour's other steps are the
//! same there, and a gateway on a privileged port needs root.

use crate::demo::CallResult;
use crate::mesh::Mesh;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

/// The Gateway of the step.
const GATEWAY: &str = "shop/shop-gateway";
/// Requests of the step.
const CALLS: usize = 20;
/// How long the gateway may take to answer its first request.
const GATEWAY_WAIT: Duration = Duration::from_secs(20);

/// Runs step `number` into `report` when the mesh runs the shop gateway in namespaces;
/// returns (steps as expected, steps): `(0, 0)` when the step does not apply.
pub(crate) fn run(mesh: &Mesh, report: &mut String, number: usize) -> (usize, usize) {
    if mesh.is_explicit() {
        return (0, 0);
    }
    let Some(pod) =
        (mesh.plan().pods.values()).find(|p| p.gateway.as_ref().is_some_and(|g| g.name == GATEWAY))
    else {
        return (0, 0);
    };
    let url = format!("http://{}:80/", pod.ip);
    let from_host = mesh.reachable_from_host(&pod.key());
    let place = if from_host {
        "this machine's shell"
    } else {
        "this mesh's underlay (another weft up routes the address on this machine)"
    };
    let _ = writeln!(
        report,
        "({number}) ingress through the shop gateway from {place}: curl {url}, {CALLS} requests \
         (HTTPRoute catalog-split: 90% catalog-v1, 10% catalog-v2)"
    );
    let call = |url: &str| call_from_machine(mesh, from_host, url);
    let deadline = Instant::now() + GATEWAY_WAIT;
    let mut first = call(&url);
    while !first.ok && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        first = call(&url);
    }
    if !first.ok {
        let line = first
            .output
            .lines()
            .next()
            .unwrap_or("(no output)")
            .to_owned();
        let _ = writeln!(
            report,
            "    result: UNEXPECTED: the gateway did not answer\n    client: {line}"
        );
        return (0, 1);
    }
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed = 0;
    for result in std::iter::once(first).chain((1..CALLS).map(|_| call(&url))) {
        match answering_version(&result) {
            Some(version) => *answers.entry(version).or_default() += 1,
            None => failed += 1,
        }
    }
    let counts: Vec<String> = answers.iter().map(|(v, n)| format!("{v} x{n}")).collect();
    let ok = failed == 0;
    let verdict = if ok {
        "OK, as expected"
    } else {
        "UNEXPECTED: some requests failed"
    };
    let _ = writeln!(
        report,
        "    result: {verdict}\n    answered by: {}{}",
        counts.join(", "),
        if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        }
    );
    (usize::from(ok), 1)
}

/// `weft x call URL` from the machine's root namespace, or from the underlay namespace.
fn call_from_machine(mesh: &Mesh, from_host: bool, url: &str) -> CallResult {
    let weft = mesh.weft_binary();
    let mut command = match (from_host, mesh.cluster()) {
        (false, Some(cluster)) => cluster.underlay().netns.command(weft),
        _ => Command::new(weft),
    };
    let output = command.args(["x", "call", url, "--timeout", "3"]).output();
    match output {
        Ok(out) => CallResult {
            ok: out.status.success(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        },
        Err(e) => CallResult {
            ok: false,
            output: format!("cannot run weft x call: {e}"),
        },
    }
}

/// The version (`catalog-v1`) whose pod answered a successful call.
fn answering_version(call: &CallResult) -> Option<String> {
    if !call.ok {
        return None;
    }
    let body: String = call.output.lines().skip(1).collect::<Vec<_>>().join("\n");
    let echo: Value = serde_json::from_str(&body).ok()?;
    let pod = echo["pod"].as_str()?;
    // `catalog-v1-0` (a replica's pod name) or `catalog-v1` (an echo `--name`).
    let version = match pod.rsplit_once('-') {
        Some((version, replica)) if replica.bytes().all(|b| b.is_ascii_digit()) => version,
        _ => pod,
    };
    Some(version.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_counted_by_the_version_of_the_pod() {
        let call = |ok: bool, output: &str| CallResult {
            ok,
            output: output.to_owned(),
        };
        let answer = call(true, "HTTP 200 OK\n{\"pod\":\"catalog-v2-0\"}\n");
        assert_eq!(answering_version(&answer).as_deref(), Some("catalog-v2"));
        let named = call(true, "HTTP 200 OK\n{\"pod\":\"catalog-v1\"}\n");
        assert_eq!(answering_version(&named).as_deref(), Some("catalog-v1"));
        assert_eq!(answering_version(&call(false, "HTTP 503\n{}")), None);
    }
}
