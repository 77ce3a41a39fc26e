//! The gateway's HTTPS, TLS and TCP listeners end to end on loopback with real TLS
//! (certificates from private CAs made with rcgen): certificate choice by SNI, ALPN h2,
//! TLS passthrough by SNI, TCP routes, 421 for a Host of another listener, and a
//! certificate swapped by a configuration update without dropping an open connection,
//! client certificates checked at HTTPS ports and presented to backends, and who chooses
//! the cipher suite.

#[path = "../pki/mod.rs"]
mod pki;

mod auto_cert;
mod cert_metrics;
mod cipher_order;
mod client_certs;
mod conformance_tls;
mod harness;
mod listeners;
