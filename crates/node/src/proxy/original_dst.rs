//! The original destination of a redirected connection (`SO_ORIGINAL_DST`), for the
//! capture listeners (15001 outbound, 15006 inbound). Redirect rules live in weft-netns.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use nix::sys::socket::{getsockopt, sockopt};
use tokio::net::TcpStream;

/// The address the client connected to before a redirect rule sent it to this listener.
///
/// # Errors
/// When the socket was not redirected (no NAT entry) or the option is unavailable.
pub(crate) fn original_dst(stream: &TcpStream) -> std::io::Result<SocketAddr> {
    let local = stream.local_addr()?;
    if local.is_ipv4() {
        let raw = getsockopt(stream, sockopt::OriginalDst).map_err(std::io::Error::from)?;
        let ip = Ipv4Addr::from(u32::from_be(raw.sin_addr.s_addr));
        Ok(SocketAddr::V4(SocketAddrV4::new(
            ip,
            u16::from_be(raw.sin_port),
        )))
    } else {
        let raw = getsockopt(stream, sockopt::Ip6tOriginalDst).map_err(std::io::Error::from)?;
        let ip = Ipv6Addr::from(raw.sin6_addr.s6_addr);
        Ok(SocketAddr::V6(SocketAddrV6::new(
            ip,
            u16::from_be(raw.sin6_port),
            0,
            0,
        )))
    }
}
