//! A ServiceEntry cannot take a VIP another object already has: a Kubernetes Service keeps
//! its ClusterIP, and between ServiceEntries the oldest keeps the address; the other one is
//! published without it, with a warning naming it and an analyze finding. Incremental edits
//! equal a full translation.

use weft_api::{Code, ConfigSnapshot, LoadedObject, analyze, parse_manifests};
use weft_control::translate::{Output, ResourceKey, TranslateOptions, Translator, translate};
use weft_proto::workload::{Address, address};

const CATALOG: &str = r"
apiVersion: v1
kind: Service
metadata: {name: catalog, namespace: shop}
spec:
  clusterIP: 10.96.5.5
  selector: {app: catalog}
  ports: [{name: http, port: 80}]
";

const GRAB: &str = r"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: grab, namespace: aaa}
spec:
  hosts: [grab.example.com]
  addresses: [10.96.5.5, 240.0.0.9]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
";

const OLD_ENTRY: &str = r"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: zzz-old, namespace: zzz, creationTimestamp: '2020-01-01T00:00:00Z'}
spec:
  hosts: [old.example.com]
  addresses: [240.0.0.9]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
";

fn objects(parts: &[&str]) -> Vec<LoadedObject> {
    parts
        .iter()
        .flat_map(|text| {
            let parsed = parse_manifests(text, "addresses.yaml".as_ref());
            assert!(parsed.findings.is_empty(), "{:#?}", parsed.findings);
            parsed.objects
        })
        .collect()
}

/// The VIPs of service `key`, as text.
fn vips(output: &Output, key: &str) -> Vec<String> {
    let resource = output.get(&ResourceKey::address(key));
    let address: Address = resource.expect(key).decode().unwrap();
    let Some(address::Type::Service(service)) = address.r#type else {
        panic!("{key} is not a service");
    };
    let ips = service.addresses.iter().map(|a| {
        let octets: [u8; 4] = a.address.as_slice().try_into().unwrap();
        std::net::IpAddr::from(octets).to_string()
    });
    ips.collect()
}

fn warnings(output: &Output) -> Vec<String> {
    output.all_warnings().map(ToString::to_string).collect()
}

#[test]
fn a_kubernetes_service_keeps_its_cluster_ip_over_a_service_entry() {
    let snapshot = ConfigSnapshot::new(objects(&[CATALOG, GRAB]));
    let output = translate(&snapshot, &TranslateOptions::default());
    assert_eq!(
        vips(&output, "shop/catalog.shop.svc.cluster.local"),
        ["10.96.5.5"]
    );
    assert_eq!(vips(&output, "aaa/grab.example.com"), ["240.0.0.9"]);
    let warnings = warnings(&output);
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("ServiceEntry/aaa/grab:")
                && w.contains("10.96.5.5")
                && w.contains("Service/shop/catalog")),
        "{warnings:#?}"
    );
    let findings = analyze(&snapshot);
    let conflicts: Vec<_> = findings
        .iter()
        .filter(|f| f.code == Code::ServiceAddressConflict)
        .map(|f| f.object.as_ref().unwrap().to_string())
        .collect();
    assert_eq!(conflicts, ["ServiceEntry/aaa/grab"], "{findings:#?}");
}

#[test]
fn the_oldest_service_entry_keeps_a_shared_address() {
    let output = translate(
        &ConfigSnapshot::new(objects(&[GRAB, OLD_ENTRY])),
        &TranslateOptions::default(),
    );
    assert_eq!(vips(&output, "zzz/old.example.com"), ["240.0.0.9"]);
    assert_eq!(vips(&output, "aaa/grab.example.com"), ["10.96.5.5"]);
}

#[test]
fn adding_and_removing_a_claimant_moves_the_vip_incrementally() {
    let options = TranslateOptions::default();
    let mut translator = Translator::new(options.clone());
    let mut old = ConfigSnapshot::new(Vec::new());
    translator.full(&old);
    let steps: [&[&str]; 5] = [
        &[GRAB],
        &[GRAB, CATALOG],
        &[GRAB, CATALOG, OLD_ENTRY],
        &[GRAB, OLD_ENTRY],
        &[GRAB],
    ];
    for parts in steps {
        let new = ConfigSnapshot::new(objects(parts));
        translator.update(&old, &new);
        assert_eq!(
            translator.output(),
            &translate(&new, &options),
            "after {parts:?}"
        );
        old = new;
    }
}
