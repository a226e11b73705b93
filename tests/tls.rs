//! HTTPS for real: the shipped binary's HTTP client (reqwest + rustls with the ring
//! provider that `src/tls.rs` installs) completes a TLS handshake with a local server,
//! verifies its certificate against the roots it is given, and refuses one it cannot
//! verify. `send-webhook` is the client here; the GitHub and Azure clients are built
//! the same way (`runner_dispatch::tls::client_builder()`).
//!
//! Roots come from `SSL_CERT_FILE`, which rustls-platform-verifier honours on Linux
//! (through rustls-native-certs), so the test CA is trusted only by the child process.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A TLS server on 127.0.0.1 that answers every request `202` and sends the request
/// head it read (or the handshake error) back over the channel.
async fn tls_server() -> (u16, tokio::sync::mpsc::UnboundedReceiver<Result<String, String>>) {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(fixture("tls/server.pem")).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(fixture("tls/server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut tls = match acceptor.accept(tcp).await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = tls.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                let _ = tls.shutdown().await;
                let _ = tx.send(Ok(String::from_utf8_lossy(&buf).into_owned()));
            });
        }
    });
    (port, rx)
}

fn send_webhook(port: u16, roots: &Path) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner-dispatch"));
    cmd.args(["send-webhook", "--url", &format!("https://localhost:{port}/api/github-webhook")])
        .arg(fixture("github-webhooks/workflow_job__queued.payload.json"))
        .env("GITHUB_WEBHOOK_SECRET", "tls-test-secret")
        .env_remove("SSL_CERT_DIR")
        .env_remove("RUST_LOG");
    cmd.env("SSL_CERT_FILE", roots);
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_speaks_https_with_a_verified_certificate() {
    let (port, mut seen) = tls_server().await;
    let out = tokio::task::spawn_blocking(move || send_webhook(port, &fixture("tls/ca.pem"))).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "send-webhook failed:\n{stdout}\n{stderr}");
    assert!(format!("{stdout}{stderr}").contains("202"), "no 202 reported:\n{stdout}\n{stderr}");
    let head = tokio::time::timeout(std::time::Duration::from_secs(20), seen.recv())
        .await
        .expect("the server saw no request")
        .unwrap()
        .expect("handshake");
    let mut lines = BufReader::new(head.as_bytes()).lines().map(Result::unwrap);
    assert_eq!(lines.next().as_deref(), Some("POST /api/github-webhook HTTP/1.1"));
    let headers: Vec<String> = lines.map(|l| l.to_ascii_lowercase()).collect();
    assert!(headers.iter().any(|h| h.starts_with("x-hub-signature-256: sha256=")), "{headers:?}");
    assert!(headers.iter().any(|h| h == "x-github-event: workflow_job"), "{headers:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_the_roots_do_not_vouch_for_is_refused() {
    let (port, mut seen) = tls_server().await;
    // The roots hold a certificate, but not the CA that signed the server's.
    let out = tokio::task::spawn_blocking(move || send_webhook(port, &fixture("tls/server.pem"))).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "send-webhook trusted an unknown CA:\n{stderr}");
    // The server saw the handshake fail: the client refused the certificate.
    let server_side = tokio::time::timeout(std::time::Duration::from_secs(20), seen.recv())
        .await
        .expect("the client never connected")
        .unwrap();
    assert!(server_side.is_err(), "a request got through: {server_side:?}");
}
