//! Every command line the Kubernetes install puts in a container (control plane, node proxy,
//! CNI installer, the uninstall's release Jobs, and the gateways and waypoints the leader
//! control plane deploys) is one this `weft` binary accepts: a flag renamed or removed in
//! the CLI fails here, not in a user's cluster.

use std::process::Command;

use weft_install::{Manifest, ManifestObject, Settings, teardown};

/// What the leader deploys for an ingress gateway and a waypoint.
fn gateway_deployments(settings: &Settings) -> Vec<ManifestObject> {
    let gateways = "\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: shop, uid: uid-web}
spec:
  gatewayClassName: weft
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: shop, uid: uid-wp}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
";
    let loaded = weft_api::parse_manifests(gateways, std::path::Path::new("gateways.yaml"));
    let snapshot = weft_api::ConfigSnapshot::observed(loaded.objects);
    let mut objects = Vec::new();
    for (gateway, _) in snapshot.gateways() {
        let description = weft_api::expand::gateway_deployment(&snapshot, gateway).unwrap();
        let built = weft_install::gateway::gateway_objects(settings, gateway, &description);
        objects.extend(built.expect("the Gateway has a uid"));
    }
    objects
}

/// The argument lists of every container in `value` whose command is `weft`.
fn weft_command_lines(value: &serde_json::Value, found: &mut Vec<Vec<String>>) {
    match value {
        serde_json::Value::Object(map) => {
            let runs_weft = map
                .get("command")
                .and_then(|c| c.as_array())
                .is_some_and(|c| c.len() == 1 && c[0] == "weft");
            if runs_weft {
                let args = map.get("args").and_then(|a| a.as_array());
                let args = args.into_iter().flatten();
                found.push(args.map(|a| a.as_str().unwrap().to_owned()).collect());
            }
            map.values().for_each(|v| weft_command_lines(v, found));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| weft_command_lines(v, found)),
        _ => {}
    }
}

#[test]
fn every_command_line_of_the_install_parses() {
    let settings = Settings::default();
    let mut objects = Manifest::generate(&settings).objects;
    objects.extend(teardown::release_jobs(&settings, &["node-a".to_owned()]));
    objects.extend(gateway_deployments(&settings));
    let mut lines = Vec::new();
    for object in &objects {
        weft_command_lines(&object.body, &mut lines);
    }
    let subcommands: Vec<&str> = lines.iter().map(|l| l[0].as_str()).collect();
    for expected in ["control", "node", "cni", "gateway", "waypoint"] {
        assert!(
            subcommands.contains(&expected),
            "{expected} in {subcommands:?}"
        );
    }
    for args in &lines {
        // Clap checks every flag and value it reads before it prints help, so an unknown
        // flag or a bad value is an error, while help spares the process from running.
        let out = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(args)
            .arg("--help")
            .output()
            .expect("run weft");
        assert!(
            out.status.success(),
            "weft {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
