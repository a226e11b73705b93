//! A fake Azure Batch account (data plane), as `BatchBackend` calls it: add a job, add,
//! get, delete and list (paged) a job's tasks.

use std::collections::BTreeMap;

use axum::http::Method;
use serde_json::{Value, json};

use super::Schema;
use super::core::{Admitted, Canned, FakeServer, Seen, Service, now_rfc3339, page};
use crate::azure::batch::{BATCH_API_VERSION, BATCH_CONTENT_TYPE};

/// A Batch account; see [`Batch`].
pub type BatchFake = FakeServer<Batch>;

/// The account's jobs and tasks, as a later GET returns them.
#[derive(Debug, Default)]
pub struct Batch {
    pub jobs: BTreeMap<String, Value>,
    /// By (job id, task id).
    pub tasks: BTreeMap<(String, String), Value>,
}

impl Batch {
    /// The task `id` in whichever job, to change its state in place.
    pub fn task_mut(&mut self, id: &str) -> Option<&mut Value> {
        self.tasks.iter_mut().find(|((_, t), _)| t == id).map(|(_, t)| t)
    }

    fn add_job(&mut self, job: Value) -> Canned {
        let id = job["id"].as_str().expect("a job id").to_owned();
        if self.jobs.contains_key(&id) {
            return Self::error(409, "JobExists", "The specified job already exists.");
        }
        self.jobs.insert(id, job);
        Canned::new(201, Value::Null)
    }

    fn add_task(&mut self, job: &str, mut task: Value) -> Canned {
        if !self.jobs.contains_key(job) {
            return job_not_found();
        }
        let id = task["id"].as_str().expect("a task id").to_owned();
        // Task ids are unique per job ignoring case.
        if self.tasks.keys().any(|(j, t)| j == job && t.eq_ignore_ascii_case(&id)) {
            return Self::error(409, "TaskExists", "The specified task already exists.");
        }
        task["state"] = json!("active");
        task["creationTime"] = json!(now_rfc3339());
        self.tasks.insert((job.to_owned(), id), task);
        Canned::new(201, Value::Null)
    }

    fn list(&self, base: &str, req: &Seen, job: &str) -> Canned {
        if !self.jobs.contains_key(job) {
            return job_not_found();
        }
        let all: Vec<Value> = self.tasks.iter().filter(|((j, _), _)| j == job).map(|(_, t)| t.clone()).collect();
        let skip = req.param("skip").and_then(|v| v.parse().ok()).unwrap_or(0);
        page(&all, skip, "odata.nextLink", |next| {
            format!("{base}{}?api-version={BATCH_API_VERSION}&skip={next}", req.path)
        })
    }
}

fn job_not_found() -> Canned {
    Batch::error(404, "JobNotFound", "The specified job does not exist.")
}

fn task_not_found() -> Canned {
    Batch::error(404, "TaskNotFound", "The specified task does not exist.")
}

impl Service for Batch {
    /// Batch's OData error, its message carrying the request id and time as Batch's do.
    fn error(status: u16, code: &str, message: &str) -> Canned {
        Canned::new(
            status,
            json!({
                "odata.metadata": "https://acct.westeurope.batch.azure.com/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element",
                "code": code,
                "message": {"lang": "en-US", "value": format!("{message}\nRequestId:00000000-0000-0000-0000-000000000000\nTime:2026-11-23T15:00:00.0000000Z")},
            }),
        )
    }

    const UNAUTHORIZED: (u16, &'static str) = (403, "AuthenticationFailed");
    const NO_API_VERSION: &'static str = "MissingRequiredQueryParameter";
    const INVALID_BODY: &'static str = "InvalidPropertyValue";

    fn admit(req: &Seen) -> Result<Admitted, Canned> {
        let content_type = req.headers.get("content-type").and_then(|v| v.to_str().ok());
        if req.method == Method::POST && content_type != Some(BATCH_CONTENT_TYPE) {
            return Err(Self::error(400, "InvalidHeaderValue", "content-type"));
        }
        let schema = if req.path == "/jobs" { Schema::BatchJob } else { Schema::BatchTask };
        Ok(Admitted { api_version: BATCH_API_VERSION, schema: Some(schema) })
    }

    fn answer(&mut self, base: &str, req: &Seen) -> Canned {
        let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        match (&req.method, segments.as_slice()) {
            (&Method::POST, ["jobs"]) => self.add_job(req.body.clone().expect("a job body")),
            (&Method::POST, ["jobs", job, "tasks"]) => self.add_task(job, req.body.clone().expect("a task body")),
            (&Method::GET, ["jobs", job, "tasks"]) => self.list(base, req, job),
            (&Method::GET, ["jobs", job, "tasks", task]) => self
                .tasks
                .get(&((*job).to_owned(), (*task).to_owned()))
                .map_or_else(task_not_found, |t| Canned::new(200, t.clone())),
            (&Method::DELETE, ["jobs", job, "tasks", task]) => {
                match self.tasks.remove(&((*job).to_owned(), (*task).to_owned())) {
                    Some(_) => Canned::new(200, Value::Null),
                    None => task_not_found(),
                }
            }
            _ => Canned::new(405, json!({"code": "MethodNotAllowed"})),
        }
    }
}
