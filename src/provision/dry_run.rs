//! A backend that creates nothing: it records and prints the request it would send,
//! with secrets redacted. Used by `demo` and `serve --dry-run`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::compute::{
    ComputeBackend, ComputeInfo, ComputeRequest, ComputeState, CreateOutcome, ProvisionError, Purpose,
};
use crate::config::Pool;

/// A request the dry-run backend received, as it would have been sent (secrets redacted).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub pool: String,
    pub name: String,
    /// `aci` or `batch`: which API the body is for.
    pub backend: &'static str,
    /// The job it was made for; 0 for an idle runner.
    pub job_id: u64,
    /// The job's repository; empty for an idle runner.
    pub repository: String,
    /// Where an idle runner registers; `None` for a job's runner.
    pub idle_target: Option<String>,
    /// The JIT runner id the request carried.
    pub runner_id: Option<u64>,
    pub body: serde_json::Value,
}

impl RecordedRequest {
    /// As a listing shows it.
    fn info(&self) -> ComputeInfo {
        ComputeInfo {
            pool: Some(self.pool.clone()),
            job_id: self.idle_target.is_none().then_some(self.job_id),
            repository: self.idle_target.is_none().then(|| self.repository.clone()),
            idle_target: self.idle_target.clone(),
            runner_id: self.runner_id,
            ..ComputeInfo::new(self.name.clone(), ComputeState::Pending)
        }
    }
}

/// Records creates and deletes; remembers names so duplicates are seen as existing.
#[derive(Debug, Default)]
pub struct DryRunBackend {
    created: Mutex<BTreeMap<String, RecordedRequest>>,
    history: Mutex<Vec<RecordedRequest>>,
    deleted: Mutex<Vec<String>>,
    print: bool,
}

impl DryRunBackend {
    /// `print`: also log each request (one line, secrets redacted).
    #[must_use]
    pub fn new(print: bool) -> Self {
        Self { print, ..Self::default() }
    }

    #[must_use]
    pub fn created(&self) -> Vec<RecordedRequest> {
        self.created.lock().map(|c| c.values().cloned().collect()).unwrap_or_default()
    }

    /// Every request received, including those since deleted, in order.
    #[must_use]
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.history.lock().map(|h| h.clone()).unwrap_or_default()
    }

    #[must_use]
    pub fn deleted(&self) -> Vec<String> {
        self.deleted.lock().map(|d| d.clone()).unwrap_or_default()
    }
}

/// The exact body the real backend would send (the ACI container group PUT or the Batch
/// add-task body, built by the same code), with every secret value replaced by `[redacted]`.
#[must_use]
pub fn redacted_request(pool: &Pool, request: &ComputeRequest) -> serde_json::Value {
    crate::azure::redact_secrets(&pool.compute.request_body(pool, request), request)
}

#[async_trait]
impl ComputeBackend for DryRunBackend {
    fn kind(&self) -> &'static str {
        "dry-run"
    }

    async fn find(&self, _pool: &Pool, name: &str) -> Result<Option<ComputeInfo>, ProvisionError> {
        let created = self.created.lock().map_err(|_| ProvisionError::permanent("dry-run state poisoned"))?;
        Ok(created.get(name).map(RecordedRequest::info))
    }

    async fn create(&self, pool: &Pool, request: &ComputeRequest) -> Result<CreateOutcome, ProvisionError> {
        let body = redacted_request(pool, request);
        let mut created = self.created.lock().map_err(|_| ProvisionError::permanent("dry-run state poisoned"))?;
        if created.contains_key(&request.name) {
            return Ok(CreateOutcome::AlreadyExists);
        }
        if self.print {
            tracing::info!(
                event = "dry_run_request",
                runner_name = %request.name,
                pool = %pool.name,
                request = %body,
                "dry-run: would create this (secrets redacted)"
            );
        }
        let recorded = RecordedRequest {
            pool: pool.name.clone(),
            name: request.name.clone(),
            backend: pool.backend().as_str(),
            job_id: match &request.purpose {
                Purpose::Job(job) => job.job_id,
                Purpose::Idle { .. } => 0,
            },
            repository: match &request.purpose {
                Purpose::Job(job) => job.repository.clone(),
                Purpose::Idle { .. } => String::new(),
            },
            idle_target: match &request.purpose {
                Purpose::Job(_) => None,
                Purpose::Idle { target } => Some(target.clone()),
            },
            runner_id: request.runner_id,
            body,
        };
        if let Ok(mut h) = self.history.lock() {
            h.push(recorded.clone());
        }
        created.insert(request.name.clone(), recorded);
        Ok(CreateOutcome::Created)
    }

    async fn delete(&self, _pool: &Pool, name: &str) -> Result<(), ProvisionError> {
        if let Ok(mut c) = self.created.lock() {
            c.remove(name);
        }
        if let Ok(mut d) = self.deleted.lock() {
            d.push(name.to_owned());
        }
        Ok(())
    }

    async fn list(&self, pool: &Pool) -> Result<Vec<ComputeInfo>, ProvisionError> {
        let created = self.created.lock().map_err(|_| ProvisionError::permanent("dry-run state poisoned"))?;
        Ok(created.values().filter(|r| r.pool == pool.name).map(RecordedRequest::info).collect())
    }

    async fn active_count(&self, pool: &Pool) -> Result<Option<usize>, ProvisionError> {
        Ok(Some(self.list(pool).await?.len()))
    }
}
