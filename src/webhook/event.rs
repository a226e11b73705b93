//! The parts of a `workflow_job` delivery we act on, parsed tolerantly: unknown fields are
//! ignored, and anything GitHub may send as null is optional.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
struct RawEvent {
    action: Option<String>,
    workflow_job: Option<RawJob>,
    repository: Option<RawRepository>,
    installation: Option<RawId>,
    organization: Option<RawLogin>,
}

#[derive(Debug, Clone, Deserialize)]
struct RawJob {
    id: u64,
    #[serde(default)]
    run_id: Option<u64>,
    #[serde(default)]
    run_attempt: Option<u64>,
    #[serde(default)]
    labels: Option<Vec<Option<String>>>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    conclusion: Option<String>,
    /// Any JSON value: one that is not a string is garbage the webhook replaces with the
    /// receive time, not a reason to refuse the delivery.
    #[serde(default)]
    created_at: Option<serde_json::Value>,
    #[serde(default)]
    started_at: Option<String>,
    #[serde(default)]
    completed_at: Option<String>,
    #[serde(default)]
    runner_id: Option<u64>,
    #[serde(default)]
    runner_name: Option<String>,
    #[serde(default)]
    workflow_name: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct RawRepository {
    full_name: Option<String>,
    name: Option<String>,
    owner: Option<RawLogin>,
    #[serde(default)]
    private: Option<bool>,
    #[serde(default)]
    visibility: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct RawLogin {
    login: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct RawId {
    id: Option<u64>,
}

/// A `workflow_job` event, reduced to what the pipeline needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowJobEvent {
    pub action: String,
    pub job_id: u64,
    pub run_id: u64,
    pub run_attempt: u64,
    pub labels: Vec<String>,
    pub status: Option<String>,
    pub conclusion: Option<String>,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub runner_id: Option<u64>,
    pub runner_name: Option<String>,
    pub workflow_name: Option<String>,
    pub job_name: Option<String>,
    /// `owner/name`.
    pub repository: String,
    /// The repository owner's login, as sent.
    pub owner: String,
    /// True unless GitHub says the repository is private or internal.
    pub public: bool,
    pub installation_id: Option<u64>,
    pub organization: Option<String>,
}

/// Why a body could not be read as a `workflow_job` event (answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("body is not a workflow_job JSON payload: {0}")]
    NotJson(String),
    #[error("workflow_job payload lacks {0}")]
    Missing(&'static str),
    /// A name or label outside GitHub's rules or our caps.
    #[error("workflow_job payload: {0}")]
    Invalid(String),
}

/// Where and roughly why the body could not be read, without serde's wording (which names
/// our internal types, e.g. "expected struct RawJob"): the sender sees this in its 400.
fn describe(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "unexpected end",
        serde_json::error::Category::Syntax | serde_json::error::Category::Io => "invalid JSON",
        serde_json::error::Category::Data => "unexpected type or value",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

/// Parses a `workflow_job` body.
///
/// # Errors
/// Not JSON, or a field we cannot do without (action, job id, repository) is absent.
pub fn parse_workflow_job(body: &[u8]) -> Result<WorkflowJobEvent, EventError> {
    let raw: RawEvent = serde_json::from_slice(body).map_err(|e| EventError::NotJson(describe(&e)))?;
    let action = raw.action.ok_or(EventError::Missing("action"))?;
    let job = raw.workflow_job.ok_or(EventError::Missing("workflow_job"))?;
    let repo = raw.repository.ok_or(EventError::Missing("repository"))?;
    // The owner login is what the allowlist checks, so the repository's path is built from
    // it and a full_name that names the same owner; neither may leave its URL segment.
    let owner = repo
        .owner
        .and_then(|o| o.login)
        .or_else(|| repo.full_name.as_deref().and_then(|f| f.split_once('/')).map(|(o, _)| o.to_owned()))
        .ok_or(EventError::Missing("repository.owner.login"))?;
    let repository = repo
        .full_name
        .or_else(|| repo.name.as_ref().map(|n| format!("{owner}/{n}")))
        .ok_or(EventError::Missing("repository.full_name"))?;
    let name = crate::names::check_full_name(&repository, &owner).map_err(EventError::Invalid)?;
    if repo.name.as_deref().is_some_and(|n| !n.eq_ignore_ascii_case(name)) {
        return Err(EventError::Invalid("repository full_name names another repository than repository.name".into()));
    }
    // The canonical spelling: the owner as the allowlist saw it.
    let repository = format!("{owner}/{name}");
    let labels = crate::names::dedup_labels(job.labels.unwrap_or_default().into_iter().flatten().collect())
        .map_err(EventError::Invalid)?;
    let public = match (repo.visibility.as_deref(), repo.private) {
        (Some(v), _) => v.eq_ignore_ascii_case("public"),
        (None, Some(private)) => !private,
        // Unknown visibility: treat as public, the cautious reading.
        (None, None) => true,
    };
    Ok(WorkflowJobEvent {
        action,
        job_id: job.id,
        run_id: job.run_id.unwrap_or_default(),
        run_attempt: job.run_attempt.unwrap_or(1),
        labels,
        status: job.status,
        conclusion: job.conclusion,
        created_at: job.created_at.and_then(|v| v.as_str().map(str::to_owned)),
        started_at: job.started_at,
        completed_at: job.completed_at,
        runner_id: job.runner_id,
        runner_name: job.runner_name.filter(|n| !n.is_empty()),
        workflow_name: job.workflow_name,
        job_name: job.name,
        repository,
        owner,
        public,
        installation_id: raw.installation.and_then(|i| i.id),
        organization: raw.organization.and_then(|o| o.login),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerates_nulls_and_unknown_fields() {
        let body = br#"{"action":"queued","new_field":{"x":1},
          "workflow_job":{"id":5,"run_id":null,"labels":["a",null],"runner_id":null,"runner_name":null,"created_at":null,"steps":null},
          "repository":{"full_name":"o/r","owner":{"login":"o"},"private":true},"installation":null}"#;
        let e = parse_workflow_job(body).expect("parses");
        assert_eq!(e.job_id, 5);
        assert_eq!(e.run_id, 0);
        assert_eq!(e.labels, vec!["a"]);
        assert!(!e.public);
        assert_eq!(e.installation_id, None);
        assert_eq!(e.runner_name, None);
    }

    #[test]
    fn names_the_missing_field() {
        assert_eq!(parse_workflow_job(b"{}"), Err(EventError::Missing("action")));
        assert!(matches!(parse_workflow_job(b"{"), Err(EventError::NotJson(_))));
        let no_repo = br#"{"action":"queued","workflow_job":{"id":1}}"#;
        assert_eq!(parse_workflow_job(no_repo), Err(EventError::Missing("repository")));
    }
}
