//! Node proxy integration tests: real node proxies (in-process) on loopback addresses,
//! real TLS and HTTP/2, echo workloads on `127.<n>.1.x`, explicit mode via SOCKS5 and HTTP
//! CONNECT.

mod bounds;
mod control;
mod datapath;
mod guard;
mod harness;
mod policy;
mod restart;
mod tunnel;
