//! Endpoints known by host name only, resolved against a DNS server on loopback: which
//! address of an answer a connection gets.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use weft_testkit::dns::DnsServer;
use weft_upstream::NameResolver;

/// Lookups per case: with two usable addresses, the chance that a random choice never
/// picks one of them is 2^-63.
const LOOKUPS: usize = 64;

async fn chosen(names: &NameResolver, host: &str, prefer_ipv6: bool) -> BTreeSet<IpAddr> {
    let mut seen = BTreeSet::new();
    for _ in 0..LOOKUPS {
        seen.insert(names.resolve(host, prefer_ipv6).await.expect(host));
    }
    seen
}

fn ips(list: &[&str]) -> BTreeSet<IpAddr> {
    list.iter().map(|ip| ip.parse().unwrap()).collect()
}

#[tokio::test]
async fn connections_spread_over_the_answer_in_the_callers_family() {
    let answers = vec![
        (
            "spread.test.example.",
            ["192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2"]
                .iter()
                .map(|ip| ip.parse().unwrap())
                .collect(),
        ),
        ("v6only.test.example.", vec!["2001:db8::6".parse().unwrap()]),
        (
            "mixed.test.example.",
            vec![
                "169.254.169.254".parse().unwrap(),
                "192.0.2.9".parse().unwrap(),
            ],
        ),
        (
            "metadata.test.example.",
            vec!["169.254.169.254".parse().unwrap()],
        ),
    ];
    let dns = DnsServer::start(Ipv4Addr::LOCALHOST, answers).await;
    let names = NameResolver::new(vec![dns.addr], false);

    assert_eq!(
        chosen(&names, "spread.test.example", false).await,
        ips(&["192.0.2.1", "192.0.2.2"]),
        "an IPv4 caller gets every IPv4 address of the answer, and only those"
    );
    assert_eq!(
        chosen(&names, "spread.test.example", true).await,
        ips(&["2001:db8::1", "2001:db8::2"]),
        "an IPv6 caller gets the IPv6 ones"
    );
    assert_eq!(
        chosen(&names, "v6only.test.example", false).await,
        ips(&["2001:db8::6"]),
        "the other family when the answer has nothing else"
    );
    assert_eq!(
        chosen(&names, "mixed.test.example", false).await,
        ips(&["192.0.2.9"]),
        "a refused address is never chosen"
    );
    let refused = names.resolve("metadata.test.example", false).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|why| why.contains("169.254.169.254")),
        "an answer of refused addresses only says why: {refused:?}"
    );
}
