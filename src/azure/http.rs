//! Plumbing shared by the ARM and Batch clients: the HTTP client, Azure error bodies,
//! `Retry-After`, and redaction of secrets from anything that reaches logs or queues.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

use crate::compute::ProvisionError;

/// Whole-request timeout: ARM answers a container group PUT in a few seconds; a Batch
/// add-task in well under one.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest `Retry-After` we pass on: the queue's own backoff takes over beyond it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Longest error message copied from an Azure answer into a reason.
const MAX_MESSAGE_CHARS: usize = 400;

/// IMF-fixdate (RFC 7231): `ocp-date` and HTTP-date `Retry-After`.
pub const HTTP_DATE: &[FormatItem<'static>] =
    format_description!("[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT");

/// A reqwest client with timeouts, for one Azure upstream.
#[must_use]
pub fn http_client() -> reqwest::Client {
    crate::tls::client_builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("runner-dispatch/", env!("CARGO_PKG_VERSION")))
        .build()
        // Only fails when the TLS backend cannot start; the default client would fail alike.
        .unwrap_or_default()
}

/// `now` as an HTTP date (`Fri, 26 Aug 2022 00:00:00 GMT`).
#[must_use]
pub fn http_date(now: OffsetDateTime) -> String {
    now.to_offset(time::UtcOffset::UTC).format(HTTP_DATE).unwrap_or_default()
}

/// An Azure error answer, reduced to what classification and users need.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AzureError {
    pub status: u16,
    /// `error.code` (ARM), `code` or `odata.error.code` (Batch).
    pub code: Option<String>,
    pub message: Option<String>,
    pub retry_after: Option<Duration>,
}

impl AzureError {
    /// Reads the answer's status, headers and body.
    pub async fn from_response(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let body = response.bytes().await.unwrap_or_default();
        let (code, message) = parse_error_body(&body);
        Self { status, code, message, retry_after }
    }

    #[must_use]
    pub fn code_is(&self, code: &str) -> bool {
        self.code.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(code))
    }

    /// `Code: message (HTTP 409)`, secrets removed.
    #[must_use]
    pub fn describe(&self, secrets: &[&str]) -> String {
        let mut out = String::new();
        if let Some(c) = &self.code {
            out.push_str(c);
        }
        if let Some(m) = &self.message {
            if !out.is_empty() {
                out.push_str(": ");
            }
            // Redact the whole message first, then cut it: cutting first could leave a
            // prefix of a secret that the redaction no longer recognises.
            out.push_str(&truncate(&redact(m.trim(), secrets), MAX_MESSAGE_CHARS));
        }
        if out.is_empty() {
            out.push_str("no error details");
        }
        out.push_str(&format!(" (HTTP {})", self.status));
        redact(&out, secrets)
    }
}

/// `(code, message)` from an ARM (`{"error":{"code","message"}}`) or Batch
/// (`{"code","message":{"value"}}`, or under `odata.error`) error body.
#[must_use]
pub fn parse_error_body(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        let text = String::from_utf8_lossy(body).trim().to_owned();
        // Kept whole: `describe` redacts, then truncates.
        return (None, (!text.is_empty()).then_some(text));
    };
    let inner = v.get("error").or_else(|| v.get("odata.error")).unwrap_or(&v);
    let code = inner.get("code").and_then(Value::as_str).map(str::to_owned);
    let mut message = match inner.get("message") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Object(o)) => o.get("value").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    // Batch puts the offending property and the reason in `values`; property *values*
    // are left out on purpose: they may be settings (a runner token).
    if let Some(values) = inner.get("values").and_then(Value::as_array) {
        let details: Vec<String> = values
            .iter()
            .filter_map(|kv| {
                let key = kv.get("key").and_then(Value::as_str)?;
                let value = kv.get("value").and_then(Value::as_str)?;
                ["PropertyName", "Reason", "QueryParameterName", "HeaderName"]
                    .contains(&key)
                    .then(|| format!("{key}={value}"))
            })
            .collect();
        if !details.is_empty() {
            let m = message.get_or_insert_with(String::new);
            // Batch messages end with RequestId/Time lines; keep the first line only.
            let first = m.lines().next().unwrap_or_default().to_owned();
            *m = format!("{first} [{}]", details.join(", "));
        }
    }
    (code, message)
}

/// `Retry-After` as seconds or an HTTP date, capped at [`MAX_RETRY_AFTER`].
#[must_use]
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let d = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = time::PrimitiveDateTime::parse(value, HTTP_DATE).ok()?.assume_utc();
        let delta = at - OffsetDateTime::now_utc();
        Duration::try_from(delta).unwrap_or(Duration::ZERO)
    };
    Some(d.min(MAX_RETRY_AFTER))
}

/// A transport failure (connect, timeout, reset): always worth another try.
#[must_use]
pub fn transport_error(what: &str, e: &reqwest::Error) -> ProvisionError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    // The URL carries no secrets, but it adds nothing a reader needs either.
    let detail = std::error::Error::source(e).map(ToString::to_string).unwrap_or_default();
    ProvisionError::retryable(format!("{what}: request {kind}{}{detail}", if detail.is_empty() { "" } else { ": " }))
}

/// Replaces every secret (longer than 3 characters) in `text` with `[redacted]`.
#[must_use]
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for s in secrets.iter().filter(|s| s.len() > 3) {
        out = out.replace(s, "[redacted]");
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max).collect();
    t.push('…');
    t
}

/// The registry host of an image reference (`myacr.azurecr.io/runner:1` →
/// `myacr.azurecr.io`), or `None` for Docker Hub short names (`ubuntu`, `library/ubuntu`).
#[must_use]
pub fn registry_host(image: &str) -> Option<&str> {
    let (first, _) = image.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

/// Whether `next` may receive our credentials: same scheme, host and port as `base`.
#[must_use]
pub fn same_origin(base: &str, next: &str) -> bool {
    match (reqwest::Url::parse(base), reqwest::Url::parse(next)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    #[test]
    fn arm_and_batch_error_bodies_give_code_and_message() {
        let arm = br#"{"error":{"code":"InaccessibleImage","message":"The image 'x' is not accessible."}}"#;
        assert_eq!(
            parse_error_body(arm),
            (Some("InaccessibleImage".into()), Some("The image 'x' is not accessible.".into()))
        );
        let batch = br#"{"odata.metadata":"m","code":"TaskExists","message":{"lang":"en-US","value":"The specified task already exists.\nRequestId:1"}}"#;
        let (code, msg) = parse_error_body(batch);
        assert_eq!(code.as_deref(), Some("TaskExists"));
        assert!(msg.unwrap().starts_with("The specified task already exists."));
        let odata =
            br#"{"odata.error":{"code":"JobNotFound","message":{"value":"The specified job does not exist."}}}"#;
        assert_eq!(parse_error_body(odata).0.as_deref(), Some("JobNotFound"));
    }

    #[test]
    fn batch_values_keep_property_names_and_drop_property_values() {
        let body = br#"{"code":"InvalidPropertyValue","message":{"value":"The value provided for one of the properties in the request body is invalid.\nRequestId:9"},"values":[{"key":"PropertyName","value":"environmentSettings"},{"key":"PropertyValue","value":"s3cr3t-token"},{"key":"Reason","value":"too long"}]}"#;
        let (_, msg) = parse_error_body(body);
        let msg = msg.unwrap();
        assert!(msg.contains("PropertyName=environmentSettings") && msg.contains("Reason=too long"), "{msg}");
        assert!(!msg.contains("s3cr3t-token") && !msg.contains("RequestId"), "{msg}");
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("17"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(17)));
        let later = http_date(OffsetDateTime::now_utc() + time::Duration::seconds(120));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let d = retry_after(&h).unwrap();
        assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120), "{d:?}");
        h.insert(RETRY_AFTER, HeaderValue::from_static("999999"));
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn http_date_is_imf_fixdate() {
        let t = time::macros::datetime!(2022-08-26 00:00:00 UTC);
        assert_eq!(http_date(t), "Fri, 26 Aug 2022 00:00:00 GMT");
    }

    #[test]
    fn registry_host_of_image_references() {
        assert_eq!(registry_host("myacr.azurecr.io/actions-runner:latest"), Some("myacr.azurecr.io"));
        assert_eq!(registry_host("localhost:5000/r"), Some("localhost:5000"));
        assert_eq!(registry_host("ghcr.io/actions/actions-runner:2.330.0"), Some("ghcr.io"));
        assert_eq!(registry_host("ubuntu"), None);
        assert_eq!(registry_host("library/ubuntu:24.04"), None);
    }

    #[test]
    fn a_long_error_echoing_a_secret_is_redacted_before_it_is_cut() {
        // The secret straddles the cut: truncating first left its first 300 characters.
        let secret = format!("JITCONFIG{}", "q".repeat(900));
        let echo = format!("{}{secret} was rejected", "p".repeat(100));
        for body in [
            serde_json::to_vec(&serde_json::json!({"error": {"code": "InvalidRequest", "message": echo}})).unwrap(),
            echo.clone().into_bytes(),
        ] {
            let (code, message) = parse_error_body(&body);
            let e = AzureError { status: 400, code, message, retry_after: None };
            let described = e.describe(&[secret.as_str()]);
            assert!(!described.contains("JITCONFIG") && !described.contains("qqqq"), "{described}");
            assert!(described.contains("[redacted]"), "{described}");
        }
    }

    #[test]
    fn secrets_are_redacted_and_next_links_must_stay_on_origin() {
        assert_eq!(redact("token abcd1234 leaked", &["abcd1234", ""]), "token [redacted] leaked");
        assert!(same_origin("https://management.azure.com", "https://management.azure.com/subscriptions/x?a=b"));
        assert!(!same_origin("https://management.azure.com", "https://evil.example/steal"));
        assert!(!same_origin("http://127.0.0.1:1", "http://127.0.0.1:2/x"));
    }
}
