//! TLS for the API: a certificate and key from PEM files (a mounted
//! `kubernetes.io/tls` Secret, as cert-manager writes it), read again when
//! their content changes (a Secret's update swaps a symlink), and an
//! axum listener that hands over connections once their handshake is
//! done, so one slow client never holds up the others.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{info, warn};

/// How long a client may take over its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the certificate chain and its key are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The certificate served now, replaced when the files change.
#[derive(Debug)]
pub struct ReloadingCert {
    files: CertFiles,
    current: RwLock<(Arc<CertifiedKey>, [u8; 32])>,
}

fn read(path: &Path) -> io::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// The certificate and key of `files`, and a digest of both files.
fn load(files: &CertFiles) -> io::Result<(Arc<CertifiedKey>, [u8; 32])> {
    let (cert_pem, key_pem) = (read(&files.cert)?, read(&files.key)?);
    let digest: [u8; 32] = Sha256::new()
        .chain_update(&cert_pem)
        .chain_update(&key_pem)
        .finalize()
        .into();
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("{}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(invalid(format!(
            "{}: no PEM certificate",
            files.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| invalid(format!("{}: {e}", files.key.display())))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| invalid(format!("{}: {e}", files.key.display())))?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| {
        invalid(format!(
            "{} and {}: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })?;
    Ok((Arc::new(certified), digest))
}

impl ReloadingCert {
    /// Reads the files: an error when they do not hold a certificate and
    /// its key.
    pub fn new(files: CertFiles) -> io::Result<Self> {
        let current = load(&files)?;
        Ok(Self {
            files,
            current: RwLock::new(current),
        })
    }

    /// Reads the files again; `Ok(true)` when they changed and the new
    /// pair is served from now on. A pair that cannot be read keeps the
    /// old one.
    pub fn reload(&self) -> io::Result<bool> {
        let (key, digest) = load(&self.files)?;
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if current.1 == digest {
            return Ok(false);
        }
        *current = (key, digest);
        Ok(true)
    }

    /// Checks the files every `period`, for ever.
    pub async fn watch(self: Arc<Self>, period: Duration) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.reload() {
                Ok(true) => {
                    info!(cert = %self.files.cert.display(), "serving the new TLS certificate")
                }
                Ok(false) => {}
                // A Secret being rewritten can be read half-way: the next
                // tick reads it whole.
                Err(e) => {
                    warn!(error = %e, "reading the TLS certificate failed; serving the previous one")
                }
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .0
                .clone(),
        )
    }
}

/// A rustls server configuration serving `cert`'s current pair, HTTP/1.1.
pub fn server_config(cert: Arc<ReloadingCert>) -> io::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Connections whose TLS handshake is done, for `axum::serve`.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp` and does each handshake in a task of its own.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a bit.
                        warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, handed) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = handed.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(Self { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accepting task only ends when this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed pair for `name`, made with openssl.
    fn pair(dir: &Path, name: &str) -> CertFiles {
        let files = CertFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        let status = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
            ])
            .arg(format!("/CN={name}"))
            .arg("-keyout")
            .arg(&files.key)
            .arg("-out")
            .arg(&files.cert)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success());
        files
    }

    #[test]
    fn a_changed_pair_is_served_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let first = pair(dir.path(), "one");
        let cert = ReloadingCert::new(first.clone()).unwrap();
        let served = |c: &ReloadingCert| c.current.read().unwrap().0.cert[0].clone();
        let before = served(&cert);
        assert!(!cert.reload().unwrap(), "nothing changed");
        let second = pair(dir.path(), "two");
        std::fs::copy(&second.cert, &first.cert).unwrap();
        std::fs::copy(&second.key, &first.key).unwrap();
        assert!(cert.reload().unwrap());
        assert_ne!(served(&cert), before);
        std::fs::write(&first.key, "not a key").unwrap();
        assert!(cert.reload().is_err());
        assert_eq!(served(&cert), served(&cert));
        // A key that is not the certificate's is refused at start.
        let mismatched = CertFiles {
            cert: second.cert.clone(),
            key: pair(dir.path(), "three").key,
        };
        assert!(ReloadingCert::new(mismatched).is_err());
    }
}
