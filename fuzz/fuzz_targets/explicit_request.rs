//! The first bytes a local client sends to the explicit port (15080): a SOCKS5 greeting
//! and CONNECT, or an HTTP CONNECT head.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_node::proxy::decode_explicit_request;

fuzz_target!(|bytes: &[u8]| {
    let _ = decode_explicit_request(bytes);
});
