//! The queue contract: small versioned JSON messages on `runner-requests`,
//! `runner-cleanup` and `runner-requests-failed`. Never the raw webhook payload.

use serde::{Deserialize, Serialize};

/// Current message version.
pub const MESSAGE_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    Provision,
    Cleanup,
}

/// One runner request (`provision`) or one finished job (`cleanup`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerMessage {
    pub v: u32,
    pub kind: MessageKind,
    pub job_id: u64,
    pub run_id: u64,
    /// `owner/name`.
    pub repository: String,
    pub owner: String,
    #[serde(default)]
    pub installation_id: Option<u64>,
    pub labels: Vec<String>,
    pub pool: String,
    /// `<prefix>-<job id>`: the compute and runner name, and the idempotency key.
    pub runner_name: String,
    pub delivery_id: String,
    /// The job's own `created_at` (RFC 3339) from GitHub.
    #[serde(default)]
    pub job_created_at: Option<String>,
    /// Cleanup only: the runner that actually ran the job (the payload's `runner_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ran_on: Option<String>,
    /// Cleanup only: the id of the runner that ran the job (the payload's `runner_id`).
    /// Runner names are unique only per scope: the compute named `ran_on` is deleted only
    /// when this id is the one recorded on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ran_on_id: Option<u64>,
    /// Cleanup only: the job's `started_at`, for lifecycle durations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_started_at: Option<String>,
    /// Why a provision request was re-made by `reconcile` (absent for webhook ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// A provision request that was given up, on `runner-requests-failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedMessage {
    #[serde(flatten)]
    pub request: RunnerMessage,
    pub reason: String,
    pub attempts: u32,
}

/// Why a queue message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("queue message is not JSON: {0}")]
    NotJson(String),
    #[error("queue message does not match the runner message schema: {0}")]
    Shape(String),
    #[error("queue message version {0} is newer than this build understands ({MESSAGE_VERSION})")]
    Version(u32),
}

/// Decodes a queue message that may arrive as an object, or JSON-encoded once or more
/// (the Functions host serializes string values again).
///
/// # Errors
/// When no JSON object can be reached, or it is not a runner message.
pub fn decode_message(value: &serde_json::Value) -> Result<RunnerMessage, MessageError> {
    let mut current = value.clone();
    for _ in 0..4 {
        match current {
            serde_json::Value::String(s) => {
                current = serde_json::from_str(&s).map_err(|e| MessageError::NotJson(e.to_string()))?;
            }
            _ => break,
        }
    }
    let msg: RunnerMessage = serde_json::from_value(current).map_err(|e| MessageError::Shape(e.to_string()))?;
    if msg.v > MESSAGE_VERSION {
        return Err(MessageError::Version(msg.v));
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RunnerMessage {
        RunnerMessage {
            v: 1,
            kind: MessageKind::Provision,
            job_id: 7,
            run_id: 9,
            repository: "o/r".into(),
            owner: "o".into(),
            installation_id: Some(3),
            labels: vec!["linux".into()],
            pool: "p".into(),
            runner_name: "ghr-7".into(),
            delivery_id: "d".into(),
            job_created_at: Some("2026-01-01T00:00:00Z".into()),
            ran_on: None,
            ran_on_id: None,
            job_started_at: None,
            origin: None,
        }
    }

    #[test]
    fn decodes_objects_and_strings_encoded_once_or_twice() {
        let m = sample();
        let obj = serde_json::to_value(&m).expect("ser");
        let once = serde_json::Value::String(obj.to_string());
        let twice = serde_json::Value::String(once.to_string());
        for v in [obj, once, twice] {
            assert_eq!(decode_message(&v).expect("decodes"), m);
        }
    }

    #[test]
    fn refuses_garbage_and_future_versions() {
        assert!(decode_message(&serde_json::json!("not json")).is_err());
        assert!(decode_message(&serde_json::json!({"v":1})).is_err());
        let mut future = serde_json::to_value(sample()).expect("ser");
        future["v"] = 2.into();
        assert!(matches!(decode_message(&future), Err(MessageError::Version(2))));
    }

    #[test]
    fn failed_message_flattens_the_request_and_adds_reason_and_attempts() {
        let f = FailedMessage { request: sample(), reason: "quota".into(), attempts: 3 };
        let v = serde_json::to_value(&f).expect("ser");
        assert_eq!(v["job_id"], 7);
        assert_eq!(v["reason"], "quota");
        assert_eq!(v["attempts"], 3);
    }
}
