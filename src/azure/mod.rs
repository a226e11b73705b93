//! The Azure side: credentials (azure_identity), thin REST clients for Azure Batch,
//! Azure Container Instances and Azure virtual machines implementing
//! [`crate::compute::ComputeBackend`], and the idle runners' demand log in Blob Storage
//! ([`demand_blob`]).

pub mod aci;
pub mod arm;
pub mod batch;
pub mod credential;
pub mod demand_blob;
pub mod http;
pub mod vm;

pub use aci::{AciBackend, AciPool, container_group_body};
pub use batch::{BatchAuth, BatchBackend, BatchPool, batch_job_body, batch_task_body};
pub use credential::{AzureCredential, CredentialError, CredentialKind, SharedKey, TokenSource};

use serde_json::Value;

use crate::compute::ComputeRequest;

/// A request body with the request's secret values replaced by `[redacted]` wherever
/// they occur: what the demo and dry-run may print.
#[must_use]
pub fn redact_secrets(body: &Value, request: &ComputeRequest) -> Value {
    redact_value(body, &request.secret_values())
}

fn redact_value(v: &Value, secrets: &[&str]) -> Value {
    match v {
        Value::String(s) => Value::String(http::redact(s, secrets)),
        Value::Array(items) => Value::Array(items.iter().map(|i| redact_value(i, secrets)).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, i)| (k.clone(), redact_value(i, secrets))).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::{EnvValue, JobInfo, Purpose};
    use crate::secret::Secret;

    #[test]
    fn redacted_bodies_keep_their_shape_and_lose_their_secrets() {
        let request = ComputeRequest {
            name: "ghr-1".into(),
            purpose: Purpose::Job(JobInfo { job_id: 1, run_id: 2, repository: "o/r".into(), job_created_at: None }),
            runner_id: None,
            env: vec![
                ("RUNNER_JITCONFIG".into(), EnvValue::Secret(Secret::new("jit-secret-value"))),
                ("A".into(), EnvValue::Plain("b".into())),
            ],
        };
        let body = serde_json::json!({"env": [{"name": "RUNNER_JITCONFIG", "secureValue": "jit-secret-value"}, {"name": "A", "value": "b"}], "n": 1});
        let r = redact_secrets(&body, &request);
        assert_eq!(
            r,
            serde_json::json!({"env": [{"name": "RUNNER_JITCONFIG", "secureValue": "[redacted]"}, {"name": "A", "value": "b"}], "n": 1})
        );
    }
}
