//! The Azure Functions custom handler protocol: invocation envelopes in, replies with
//! `Outputs`, `Logs` and `ReturnValue` out. Parsing is tolerant of the documented
//! variations (Query as object or string, Body absent, header values as string or array).

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::webhook::Headers;

/// Output binding names, as declared in `function_app/*/function.json`.
pub mod bindings {
    /// `github-webhook`: the HTTP response.
    pub const HTTP_RESPONSE: &str = "res";
    /// `github-webhook` and `reconcile`: queue output to `runner-requests`.
    pub const RUNNER_REQUEST: &str = "runnerRequest";
    /// `github-webhook`: queue output to `runner-cleanup`.
    pub const RUNNER_CLEANUP: &str = "runnerCleanup";
    /// `provision-runner`: queue output to `runner-requests-failed`.
    pub const FAILED: &str = "failedRequest";
    /// `provision-runner` / `cleanup-runner`: the queue trigger.
    pub const QUEUE_TRIGGER: &str = "message";
}

/// The HTTP request inside a `github-webhook` envelope.
#[derive(Debug, Clone, Default)]
pub struct HostHttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Headers,
    /// The raw body, as the UTF-8 string the host passed.
    pub body: Vec<u8>,
}

/// Why an envelope could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("invocation body is not JSON: {0}")]
    NotJson(String),
    #[error("invocation has no Data.{0}")]
    Missing(&'static str),
}

/// Parses the `github-webhook` invocation: `{"Data":{"req":{...}},"Metadata":{...}}`.
///
/// # Errors
/// Not JSON, or no request object in `Data`.
pub fn parse_http_invocation(body: &[u8]) -> Result<HostHttpRequest, EnvelopeError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    let data = v.get("Data").and_then(Value::as_object).ok_or(EnvelopeError::Missing("req"))?;
    // The trigger binding is named `req` in our function.json; accept any object with a Method/Url.
    let req = data
        .get("req")
        .or_else(|| data.values().find(|r| r.get("Method").is_some() || r.get("Url").is_some()))
        .and_then(Value::as_object)
        .ok_or(EnvelopeError::Missing("req"))?;
    let get_str = |k: &str| req.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let headers = match req.get("Headers") {
        Some(Value::Object(h)) => h
            .iter()
            .filter_map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    Value::Array(items) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
                    _ => return None,
                };
                Some((k.clone(), value))
            })
            .collect(),
        _ => Vec::new(),
    };
    let body = match req.get("Body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.clone().into_bytes(),
        // Not what the host documents; keep going, the signature check will decide.
        Some(other) => other.to_string().into_bytes(),
    };
    Ok(HostHttpRequest { method: get_str("Method"), url: get_str("Url"), headers: Headers::new(headers), body })
}

/// A queue-trigger invocation: the message value and how often it was dequeued.
#[derive(Debug, Clone)]
pub struct QueueInvocation {
    pub message: Value,
    pub dequeue_count: u32,
    pub id: Option<String>,
}

/// Parses `{"Data":{"<binding>": <message>},"Metadata":{"DequeueCount":n,...}}`.
///
/// # Errors
/// Not JSON, or no message in `Data`.
pub fn parse_queue_invocation(body: &[u8]) -> Result<QueueInvocation, EnvelopeError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    let data = v.get("Data").and_then(Value::as_object).ok_or(EnvelopeError::Missing("message"))?;
    let message = data
        .get(bindings::QUEUE_TRIGGER)
        .or_else(|| data.values().next())
        .cloned()
        .ok_or(EnvelopeError::Missing("message"))?;
    let meta = v.get("Metadata");
    let dequeue_count = meta
        .and_then(|m| m.get("DequeueCount"))
        .and_then(|d| d.as_u64().or_else(|| d.as_str().and_then(|s| s.trim_matches('"').parse().ok())))
        .and_then(|d| u32::try_from(d).ok())
        .unwrap_or(1)
        .max(1);
    let id = meta.and_then(|m| m.get("Id")).and_then(Value::as_str).map(str::to_owned);
    Ok(QueueInvocation { message, dequeue_count, id })
}

/// The reply to any invocation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InvocationReply {
    #[serde(rename = "Outputs")]
    pub outputs: Map<String, Value>,
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    #[serde(rename = "ReturnValue")]
    pub return_value: Option<Value>,
}

impl InvocationReply {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the HTTP response GitHub will see (status as a string, as the host expects).
    pub fn http_response(&mut self, status: u16, body: &Value) {
        self.outputs.insert(
            bindings::HTTP_RESPONSE.into(),
            json!({
                "statusCode": status.to_string(),
                "body": body.to_string(),
                "headers": { "Content-Type": "application/json" },
            }),
        );
    }

    /// Adds messages to a queue output (an array when more than one).
    pub fn queue(&mut self, binding: &str, messages: Vec<Value>) {
        if messages.is_empty() {
            return;
        }
        let value = if messages.len() == 1 {
            messages.into_iter().next().unwrap_or(Value::Null)
        } else {
            Value::Array(messages)
        };
        self.outputs.insert(binding.into(), value);
    }

    pub fn log(&mut self, line: impl Into<String>) {
        self.logs.push(line.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_docs_queue_example() {
        let body =
            include_bytes!("../tests/fixtures/azure-functions/custom-handler-request.queue-trigger.docs-example.json");
        let q = parse_queue_invocation(body).expect("parses");
        assert_eq!(q.dequeue_count, 1);
        assert_eq!(q.message, Value::String("{ message: \"Message sent\" }".into()));
    }

    #[test]
    fn reads_the_docs_http_example_with_array_headers() {
        let body =
            include_bytes!("../tests/fixtures/azure-functions/custom-handler-request.http-trigger.docs-example.json");
        let r = parse_http_invocation(body).expect("parses");
        assert_eq!(r.method, "POST");
        assert!(!r.body.is_empty());
    }

    #[test]
    fn tolerates_string_query_string_headers_and_absent_body() {
        let body = br#"{"Data":{"req":{"Url":"http://x/api/github-webhook","Method":"POST","Query":"{}",
            "Headers":{"X-GitHub-Event":"ping","content-type":["application/json"]}}},"Metadata":{}}"#;
        let r = parse_http_invocation(body).expect("parses");
        assert_eq!(r.headers.get("x-github-event"), Some("ping"));
        assert_eq!(r.headers.get("Content-Type"), Some("application/json"));
        assert!(r.body.is_empty());
    }

    #[test]
    fn reply_uses_the_host_field_names() {
        let mut r = InvocationReply::new();
        r.http_response(202, &json!({"result":"accepted"}));
        r.queue(bindings::RUNNER_REQUEST, vec![json!({"v":1})]);
        let v = serde_json::to_value(&r).expect("ser");
        assert_eq!(v["Outputs"]["res"]["statusCode"], "202");
        assert_eq!(v["Outputs"]["runnerRequest"]["v"], 1);
        assert!(v["ReturnValue"].is_null());
    }
}
