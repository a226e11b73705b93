//! `send-webhook FILE --url URL`: sign a payload with the configured secret and POST it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::Settings;

pub(super) async fn send_webhook(file: &PathBuf, url: &str, event: &str, delivery: Option<String>) -> ExitCode {
    let body = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let Some(secret) = Settings::signing_secret_from_env() else {
        eprintln!("error: GITHUB_WEBHOOK_SECRET is not set; it signs the payload");
        return ExitCode::FAILURE;
    };
    let delivery = delivery.unwrap_or_else(crate::webhook::random_delivery_id);
    let signature = crate::webhook::sign(secret.expose().as_bytes(), &body);
    let client = crate::tls::client_builder().timeout(Duration::from_secs(30)).build();
    let Ok(client) = client else {
        eprintln!("error: cannot build an HTTP client");
        return ExitCode::FAILURE;
    };
    let result = client
        .post(url)
        .header("Content-Type", "application/json")
        .header("User-Agent", "GitHub-Hookshot/runner-dispatch-send-webhook")
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", &delivery)
        .header("X-Hub-Signature-256", signature)
        .body(body)
        .send()
        .await;
    match result {
        Ok(resp) => {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            println!("{} {}\n{text}", status.as_u16(), status.canonical_reason().unwrap_or(""));
            if status.is_success() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("error: POST {url} failed: {e}");
            ExitCode::FAILURE
        }
    }
}
