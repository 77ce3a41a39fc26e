//! The pod table `weft up` prints once the mesh is ready.

use crate::plan::MeshPlan;

/// `NODE POD IP ENROLLED IDENTITY`, one row per pod, sorted by node then pod; a waypoint's
/// pod says `waypoint` (it is not captured: it terminates HBONE itself), a gateway's pod
/// `gateway` (not captured: clients outside the mesh reach it at its address).
#[must_use]
pub fn pod_table(plan: &MeshPlan) -> String {
    let mut rows: Vec<[String; 5]> = plan
        .pods
        .values()
        .map(|p| {
            [
                p.node.clone(),
                p.key(),
                p.ip.to_string(),
                match (&p.waypoint, &p.gateway, p.enrolled) {
                    (Some(_), _, _) => "waypoint",
                    (None, Some(_), _) => "gateway",
                    (None, None, true) => "yes",
                    (None, None, false) => "no",
                }
                .to_owned(),
                p.identity.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    rows.sort();
    let header = ["NODE", "POD", "IP", "ENROLLED", "IDENTITY"].map(str::to_owned);
    render(&header, &rows)
}

fn render(header: &[String; 5], rows: &[[String; 5]]) -> String {
    let mut widths = header.clone().map(|h| h.len());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PodPlan;
    use std::net::Ipv4Addr;

    #[test]
    fn rows_are_aligned_and_sorted_by_node() {
        let pod = |ns: &str, name: &str, node: &str, identity: Option<&str>| PodPlan {
            namespace: ns.into(),
            name: name.into(),
            node: node.into(),
            ip: Ipv4Addr::new(10, 244, 1, 7),
            uid: String::new(),
            enrolled: identity.is_some(),
            identity: identity.map(str::to_owned),
            containers: Vec::new(),
            waypoint: None,
            gateway: None,
        };
        let mut plan = MeshPlan::default();
        for p in [
            pod(
                "shop",
                "catalog-0",
                "node-b",
                Some("spiffe://cluster.local/ns/shop/sa/catalog"),
            ),
            pod("legacy", "client-0", "node-a", None),
            PodPlan {
                enrolled: false,
                waypoint: Some("shop/wp".into()),
                ..pod(
                    "shop",
                    "wp-1",
                    "node-a",
                    Some("spiffe://cluster.local/ns/shop/sa/wp"),
                )
            },
            PodPlan {
                gateway: Some(crate::plan::GatewayPlan {
                    name: "shop/gw".into(),
                    listeners: vec![("HTTP".into(), 80)],
                }),
                ..pod(
                    "shop",
                    "gw-weft-1",
                    "node-b",
                    Some("spiffe://cluster.local/ns/shop/sa/gw-weft"),
                )
            },
        ] {
            plan.pods.insert(p.key(), p);
        }
        assert_eq!(
            pod_table(&plan),
            "\
NODE    POD              IP          ENROLLED  IDENTITY
node-a  legacy/client-0  10.244.1.7  no        -
node-a  shop/wp-1        10.244.1.7  waypoint  spiffe://cluster.local/ns/shop/sa/wp
node-b  shop/catalog-0   10.244.1.7  yes       spiffe://cluster.local/ns/shop/sa/catalog
node-b  shop/gw-weft-1   10.244.1.7  gateway   spiffe://cluster.local/ns/shop/sa/gw-weft
"
        );
    }
}
