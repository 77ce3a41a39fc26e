//! Helpers shared by weft's tests (a dev-dependency only; never linked into the binary).
//!
//! Tests that need several distinct addresses (node proxies, workloads) use a whole loopback
//! network `127.X.0.0/16`. Test runners run tests in parallel, in threads (`cargo test`) or
//! in separate processes (`cargo nextest`), so a network must be unique across processes,
//! not just within one: [`loopback_net`] leases one by binding a sentinel socket in it and
//! holding that socket until the process exits. Another process trying the same network
//! fails to bind the sentinel and moves on to the next.
//!
//! [`tcp_echo`] is the upstream most data-path tests relay to; [`jwt`] makes keys and signed
//! tokens for the request-authentication tests; [`dns::DnsServer`] answers name lookups
//! from a table. [`help_flags_of`] reads the flags a
//! command's `--help` lists (tests that two commands take the same flags).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

pub mod dns;
pub mod jwt;

/// Port of the sentinel socket that marks a `127.X.0.0/16` network as leased.
const SENTINEL_PORT: u16 = 19_999;
/// Second octets handed out: 127.0.x and 127.1.x are left to tests that use fixed
/// addresses such as 127.0.0.1.
const FIRST_OCTET: u8 = 2;
const LAST_OCTET: u8 = 254;

/// Leases a loopback network `127.X.0.0/16` no other test (in any process) holds, and
/// returns `X`. The lease lasts until the process exits.
///
/// # Panics
/// When every network is leased.
#[must_use]
pub fn loopback_net() -> u8 {
    let span = u16::from(LAST_OCTET - FIRST_OCTET) + 1;
    let start = rand::random_range(0..span);
    for step in 0..span {
        let offset = u8::try_from((start + step) % span).unwrap_or(0);
        let octet = FIRST_OCTET + offset;
        let sentinel = Ipv4Addr::new(127, octet, 255, 254);
        if let Ok(listener) = TcpListener::bind((sentinel, SENTINEL_PORT)) {
            // Held for the life of the process: that is the lease.
            std::mem::forget(listener);
            return octet;
        }
    }
    panic!("every loopback network 127.{FIRST_OCTET}-{LAST_OCTET}.0.0/16 is leased");
}

/// A TCP server on `addr` (port 0: the kernel picks) that echoes every connection until
/// EOF, then closes its write half. Returns the bound address and the accept task.
///
/// # Panics
/// When `addr` cannot be bound.
pub async fn tcp_echo(addr: SocketAddr) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("bind echo server on {addr}: {e}"));
    let bound = listener.local_addr().expect("echo server address");
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.into_split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut writer).await;
            });
        }
    });
    (bound, task)
}

/// Runs `command` (a `--help` invocation), checks it succeeds and prints `usage`, and
/// returns the long flags (without dashes) its help text lists: `--name` at the start of
/// an option line, after a short flag if there is one (`-h, --help`).
///
/// # Panics
/// When the command fails, does not print `usage` or lists no `--help`.
pub fn help_flags_of(
    command: &mut std::process::Command,
    usage: &str,
) -> std::collections::BTreeSet<String> {
    let out = command.output().expect("run the --help command");
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8(out.stdout).expect("help text is UTF-8");
    assert!(help.contains(usage), "{help}");
    let flags: std::collections::BTreeSet<String> = help
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let line = match line.split_once(", --") {
                Some((short, _)) if short.len() == 2 && short.starts_with('-') => &line[4..],
                _ => line,
            };
            let name = line.strip_prefix("--")?;
            let end = name
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(name.len());
            Some(name[..end].to_owned())
        })
        .collect();
    assert!(flags.contains("help"), "no --help listed in {help}");
    flags
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn leases_are_distinct_and_exclusive() {
        let leased: HashSet<u8> = (0..20).map(|_| loopback_net()).collect();
        assert_eq!(leased.len(), 20, "each call leases a different network");
        for octet in leased {
            let sentinel = Ipv4Addr::new(127, octet, 255, 254);
            assert!(
                TcpListener::bind((sentinel, SENTINEL_PORT)).is_err(),
                "127.{octet} must stay leased"
            );
        }
    }
}
