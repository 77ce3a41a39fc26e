//! Small TLS helpers shared by the client and the server.

use std::sync::Arc;

use rustls::{CommonState, ProtocolVersion};

use crate::ALPN_H2;
use crate::stream::PeerCertificates;

/// What the negotiated session lacks, if anything, for HBONE (TLS 1.3 + ALPN h2).
pub(crate) enum SessionProblem {
    Version(String),
    Alpn(String),
}

pub(crate) fn check_session(state: &CommonState) -> Result<(), SessionProblem> {
    match state.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => {}
        other => return Err(SessionProblem::Version(format!("{other:?}"))),
    }
    match state.alpn_protocol() {
        Some(ALPN_H2) => Ok(()),
        Some(other) => Err(SessionProblem::Alpn(
            String::from_utf8_lossy(other).into_owned(),
        )),
        None => Err(SessionProblem::Alpn("no ALPN".to_owned())),
    }
}

pub(crate) fn peer_certificates(state: &CommonState) -> PeerCertificates {
    state
        .peer_certificates()
        .map(|chain| chain.iter().map(|cert| cert.clone().into_owned()).collect())
        .unwrap_or_default()
}

/// Returns the client config with `h2` offered over ALPN, cloning only when the caller's
/// config does not already offer it.
pub(crate) fn client_with_h2(config: &Arc<rustls::ClientConfig>) -> Arc<rustls::ClientConfig> {
    if config.alpn_protocols.iter().any(|p| p == ALPN_H2) {
        return Arc::clone(config);
    }
    let mut owned = (**config).clone();
    owned.alpn_protocols.push(ALPN_H2.to_vec());
    Arc::new(owned)
}

/// Returns the server config with `h2` as its ALPN protocol list when none is set.
pub(crate) fn server_with_h2(config: Arc<rustls::ServerConfig>) -> Arc<rustls::ServerConfig> {
    if config.alpn_protocols.iter().any(|p| p == ALPN_H2) {
        return config;
    }
    let mut owned = (*config).clone();
    owned.alpn_protocols.push(ALPN_H2.to_vec());
    Arc::new(owned)
}
