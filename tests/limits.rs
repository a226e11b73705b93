//! Request limits: a slow client on the raw route gets a bare 408, the envelope routes are
//! not cut short, and hyper's header limits answer 431.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use runner_dispatch::config::Settings;
use runner_dispatch::provision::dry_run::DryRunBackend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SHORT: Duration = Duration::from_millis(300);

/// The standalone admin token of [`app`]: the envelope routes are served to it.
const ADMIN_TOKEN: &str = "limits-admin-token-0123456789abcdef";

async fn app() -> TestApp {
    let dir = tempfile::tempdir().expect("tmp").keep();
    let settings = Settings { admin_token: Some(ADMIN_TOKEN.into()), ..settings() };
    spawn_app_with_settings(&settings, pools(), Arc::new(DryRunBackend::new(false)), Some(&dir), fast_queue(), SHORT)
        .await
}

/// Sends `head` and the first `sent` bytes of a body announced as `len` bytes, then waits.
async fn slow_request(app: &TestApp, path: &str, len: usize, sent: &[u8], pause: Duration, rest: &[u8]) -> String {
    let mut s = TcpStream::connect(app.addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nX-GitHub-Event: ping\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("head");
    s.write_all(sent).await.expect("first part");
    tokio::time::sleep(pause).await;
    let _ = s.write_all(rest).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_slow_body_on_the_raw_route_gets_a_bare_408() {
    let app = app().await;
    let start = Instant::now();
    let reply = slow_request(&app, "/api/github-webhook", 100, b"{\"zen\":", Duration::from_secs(2), b"").await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(start.elapsed() < Duration::from_secs(5));
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(body.is_empty(), "no detail in a timeout: {body:?}");
    assert!(app.state.queue.as_ref().expect("queue").spool().pending().is_empty());
}

#[tokio::test]
async fn a_request_within_the_timeout_is_answered_normally() {
    let app = app().await;
    let body = br#"{"zen":"hi"}"#;
    let sig = sign(body);
    let mut s = TcpStream::connect(app.addr).await.expect("connect");
    let head = format!(
        "POST /api/github-webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-GitHub-Event: ping\r\nX-Hub-Signature-256: {sig}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("head");
    tokio::time::sleep(SHORT / 3).await;
    s.write_all(body).await.expect("body");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let reply = String::from_utf8_lossy(&out);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("pong"), "{reply}");
}

#[tokio::test]
async fn envelope_routes_are_not_cut_short_by_the_raw_timeout() {
    let app = app().await;
    let envelope = br#"{"Data":{"req":{"Method":"POST","Url":"u","Headers":{"X-GitHub-Event":["ping"]},"Body":"{}"}},"Metadata":{}}"#;
    let (first, rest) = envelope.split_at(10);
    let reply = slow_request(&app, "/github-webhook", envelope.len(), first, SHORT * 3, rest).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "the host must get 200: {reply}");
    assert!(reply.contains("statusCode"), "{reply}");
}

async fn raw_head(app: &TestApp, extra_headers: &str) -> String {
    let mut s = TcpStream::connect(app.addr).await.expect("connect");
    let head = format!(
        "POST /api/github-webhook HTTP/1.1\r\nHost: x\r\n{extra_headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let _ = s.write_all(head.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn hyper_refuses_more_than_100_headers_with_431() {
    let app = app().await;
    let ok: String = (0..90).map(|i| format!("X-Pad-{i}: v\r\n")).collect();
    assert!(
        raw_head(&app, &ok).await.starts_with("HTTP/1.1 401"),
        "90 headers are fine (then the signature is missing)"
    );
    let many: String = (0..101).map(|i| format!("X-Pad-{i}: v\r\n")).collect();
    let reply = raw_head(&app, &many).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
}

#[tokio::test]
async fn hyper_refuses_a_request_head_over_its_buffer_with_431() {
    let app = app().await;
    // hyper's default read buffer for the request head is 8 KiB + 100 * 4 KiB (~408 KiB); it
    // checks after each read, so a head a little over it may still pass. 100 KiB is fine,
    // 600 KiB is refused before any handler runs.
    let fine = format!("X-Big: {}\r\n", "a".repeat(100 * 1024));
    assert!(raw_head(&app, &fine).await.starts_with("HTTP/1.1 401"));
    let big = format!("X-Big: {}\r\n", "a".repeat(600 * 1024));
    let reply = raw_head(&app, &big).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{}", &reply[..reply.len().min(200)]);
}

#[tokio::test]
async fn a_client_trickling_its_request_head_is_cut_off() {
    let app = app().await;
    let mut s = TcpStream::connect(app.addr).await.expect("connect");
    let head = b"POST /api/github-webhook HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let start = Instant::now();
    let mut cut_off = false;
    // One byte every 2 s: hyper's header-read timeout must end it, not the client.
    for b in head {
        if s.write_all(&[*b]).await.is_err() {
            cut_off = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => {
                cut_off = true;
                break;
            }
            Ok(Ok(_)) => {} // a 408 before the close is fine
            Err(_) => {}    // still open: send the next byte
        }
        if start.elapsed() > Duration::from_secs(40) {
            break;
        }
    }
    assert!(cut_off, "a trickling client held its connection for {:?}", start.elapsed());
    assert!(start.elapsed() < Duration::from_secs(30), "cut off only after {:?}", start.elapsed());
}

#[tokio::test]
async fn hundreds_of_idle_connections_do_not_keep_a_delivery_waiting() {
    let app = app().await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(app.addr).await.expect("connect"));
    }
    let body = fresh_queued(931);
    let resp = app
        .client
        .post(app.url("/api/github-webhook"))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", "workflow_job")
        .header("X-GitHub-Delivery", "idle-1")
        .header("X-Hub-Signature-256", sign(&body))
        .body(body)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("a delivery is answered while 300 connections sit idle");
    assert_eq!(resp.status(), 202);
    drop(idle);
}
