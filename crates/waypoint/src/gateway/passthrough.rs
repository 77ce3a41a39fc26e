//! Reading a TLS ClientHello without terminating the connection: the bytes are buffered
//! (at most [`MAX_CLIENT_HELLO`]) and fed to rustls' `Acceptor`, which parses the handshake
//! with its own bounds checks; the server name it finds chooses the listener and, for TLS
//! passthrough, the TLSRoute. The buffered bytes are then replayed — to the backend for
//! passthrough, to the TLS server for termination. The client's cipher suite order is
//! noted too: a client that puts ChaCha20-Poly1305 first (usually a device without AES
//! instructions) is served in its own order when TLS is terminated.

use bytes::{Bytes, BytesMut};
use rustls::CipherSuite;
use rustls::server::Acceptor;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The most bytes read while looking for a complete ClientHello.
pub(crate) const MAX_CLIENT_HELLO: usize = 64 * 1024;

/// A ClientHello read but not answered.
#[derive(Debug)]
pub(crate) struct Hello {
    /// The server name asked for (SNI), lower-case.
    pub sni: Option<String>,
    /// Every byte read so far, to replay.
    pub bytes: Bytes,
    /// The client's most preferred cipher suite is a ChaCha20-Poly1305 one.
    pub prefers_chacha: bool,
}

/// Reads until a complete ClientHello has arrived.
///
/// # Errors
/// The client closed first, sent something that is not TLS, or sent more than
/// [`MAX_CLIENT_HELLO`] bytes without completing it.
pub(crate) async fn read_client_hello<IO>(io: &mut IO) -> Result<Hello, String>
where
    IO: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(2048);
    let mut acceptor = Acceptor::default();
    let mut fed = 0;
    loop {
        if buf.len() >= MAX_CLIENT_HELLO {
            return Err(format!(
                "no complete ClientHello in {MAX_CLIENT_HELLO} bytes"
            ));
        }
        let read = io.read_buf(&mut buf).await.map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("the client closed before its ClientHello".into());
        }
        let mut unread = &buf[fed..];
        while !unread.is_empty() {
            acceptor
                .read_tls(&mut unread)
                .map_err(|e| format!("not a TLS ClientHello: {e}"))?;
        }
        fed = buf.len();
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let hello = accepted.client_hello();
                return Ok(Hello {
                    sni: hello.server_name().map(str::to_ascii_lowercase),
                    bytes: buf.freeze(),
                    prefers_chacha: prefers_chacha(hello.cipher_suites()),
                });
            }
            Ok(None) => {}
            Err((error, _alert)) => return Err(format!("not a TLS ClientHello: {error}")),
        }
    }
}

/// Whether the first real suite of a client's list (GREASE values, RFC 8701, and the
/// signalling suites skipped) is a ChaCha20-Poly1305 one, of TLS 1.3 or TLS 1.2.
fn prefers_chacha(offered: &[CipherSuite]) -> bool {
    let first = offered.iter().map(|&suite| u16::from(suite)).find(|&code| {
        let [high, low] = code.to_be_bytes();
        let grease = high == low && high & 0x0f == 0x0a;
        let signalling = matches!(code, 0x00ff | 0x5600);
        !grease && !signalling
    });
    first.is_some_and(|code| {
        [
            CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ]
        .map(u16::from)
        .contains(&code)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The first flight of a real rustls client for `name`.
    fn client_hello(name: &str) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        client.write_tls(&mut out).unwrap();
        out
    }

    #[tokio::test]
    async fn the_server_name_is_read_and_every_byte_kept() {
        let hello = client_hello("Shop.Example.com");
        let (mut tx, mut rx) = tokio::io::duplex(64);
        let sent = hello.clone();
        tokio::spawn(async move {
            // In small pieces: the reader must reassemble the record.
            for chunk in sent.chunks(7) {
                tokio::io::AsyncWriteExt::write_all(&mut tx, chunk)
                    .await
                    .unwrap();
            }
        });
        let read = read_client_hello(&mut rx).await.expect("hello");
        assert_eq!(read.sni.as_deref(), Some("shop.example.com"));
        assert_eq!(read.bytes.as_ref(), hello.as_slice());
        // rustls lists AES-256-GCM first.
        assert!(!read.prefers_chacha);
    }

    #[test]
    fn chacha_first_is_seen_past_grease_and_signalling_suites() {
        let chacha = CipherSuite::TLS13_CHACHA20_POLY1305_SHA256;
        let aes = CipherSuite::TLS13_AES_128_GCM_SHA256;
        let grease = CipherSuite::from(0x3a3a);
        let renegotiation = CipherSuite::TLS_EMPTY_RENEGOTIATION_INFO_SCSV;
        assert!(prefers_chacha(&[grease, chacha, aes]));
        assert!(prefers_chacha(&[
            renegotiation,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        ]));
        assert!(!prefers_chacha(&[grease, aes, chacha]));
        assert!(!prefers_chacha(&[grease]));
        assert!(!prefers_chacha(&[]));
    }

    #[tokio::test]
    async fn plain_text_is_refused() {
        let (mut tx, mut rx) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut tx, b"GET / HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        assert!(read_client_hello(&mut rx).await.is_err());
    }
}
