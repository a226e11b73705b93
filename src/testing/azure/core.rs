//! What every fake Azure REST service shares: its state behind one lock, each request
//! recorded as received, the credential and api-version checks, bodies checked against
//! Microsoft's models, and scripted answers ahead of the service's own. A service (ARM,
//! Batch) adds only its paths, its error shape and what a request does to its state.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Schema;
use crate::azure::credential::SharedKey;

/// Items per list page: small, so two or three runners already span pages.
const PAGE: usize = 2;

/// A request as the fake received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    /// As sent (still percent-encoded).
    pub query: String,
    pub headers: HeaderMap,
    pub body: Option<Value>,
}

impl Seen {
    /// The value of query parameter `key` as sent.
    #[must_use]
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }

    /// `METHOD /path`, to assert the order of calls.
    #[must_use]
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// One answer: a status, extra headers and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
}

impl Canned {
    #[must_use]
    pub fn new(status: u16, body: Value) -> Self {
        Self { status, headers: Vec::new(), body }
    }

    /// The same answer with `Retry-After: <seconds>`.
    #[must_use]
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.headers.push(("retry-after", seconds.to_string()));
        self
    }
}

impl IntoResponse for Canned {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).expect("a valid status");
        let body = serde_json::to_vec(&self.body).expect("json");
        let mut r = (status, [("content-type", "application/json")], body).into_response();
        for (k, v) in self.headers {
            r.headers_mut().insert(k, v.parse().expect("a valid header value"));
        }
        r
    }
}

/// A scripted refusal: every request with `method` whose path contains `path` gets
/// `answer` (after the common checks) until the rule is removed.
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: Method,
    pub path: String,
    pub answer: Canned,
}

/// How callers must authenticate.
#[derive(Debug, Clone)]
pub enum Credential {
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// Shared Key, recomputed over the request as received.
    SharedKey(SharedKey),
}

/// One fake Azure REST service: what it is (`S`) and what it saw. Derefs to `S`, so a
/// test reads `fake.lock().groups`.
pub struct Fake<S> {
    pub base: String,
    pub credential: Credential,
    pub seen: Vec<Seen>,
    /// Answers for the next requests, whatever they are, ahead of the service's own.
    pub canned: VecDeque<Canned>,
    /// Answers for matching requests while the rule stands.
    pub rules: Vec<Rule>,
    /// Request bodies that passed the schema check.
    pub bodies_checked: usize,
    pub service: S,
}

impl<S> Deref for Fake<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.service
    }
}

impl<S> DerefMut for Fake<S> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.service
    }
}

/// What a service requires of a request it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// The `api-version` the request must carry (ARM's differ by resource provider).
    pub api_version: &'static str,
    /// The model a body on this request must satisfy (`None`: it takes no body).
    pub schema: Option<Schema>,
}

/// A service's paths, errors and state changes; [`Fake`] does the rest.
pub trait Service: Default + Send + 'static {
    /// Status and code of the answer to a wrong credential.
    const UNAUTHORIZED: (u16, &'static str);
    /// Code of the answer to a missing `api-version`.
    const NO_API_VERSION: &'static str;
    /// Code of the answer to a body the model refuses.
    const INVALID_BODY: &'static str;

    /// This service's error answer.
    fn error(status: u16, code: &str, message: &str) -> Canned;

    /// Refuses what the service refuses before reading a body (a path it does not serve, a
    /// wrong content type); else what the request must carry.
    ///
    /// # Errors
    /// The refusal.
    fn admit(req: &Seen) -> Result<Admitted, Canned>;

    /// Acts on a request that passed every check. `base`: the fake's URL, for next links.
    fn answer(&mut self, base: &str, req: &Seen) -> Canned;
}

impl<S: Service> Fake<S> {
    fn handle(&mut self, req: &Seen) -> Canned {
        if !self.authorized(req) {
            let (status, code) = S::UNAUTHORIZED;
            return S::error(status, code, "the credential is not the one expected");
        }
        let Admitted { api_version, schema } = match S::admit(req) {
            Ok(admitted) => admitted,
            Err(refusal) => return refusal,
        };
        if !req.query.split('&').any(|kv| kv == format!("api-version={api_version}")) {
            return S::error(400, S::NO_API_VERSION, "api-version");
        }
        if let Some(body) = &req.body {
            let Some(schema) = schema else {
                return S::error(400, S::INVALID_BODY, "this request takes no body");
            };
            let errors = schema.errors(body);
            if !errors.is_empty() {
                return S::error(400, S::INVALID_BODY, &errors.join("; "));
            }
            self.bodies_checked += 1;
        }
        if let Some(canned) = self.canned.pop_front() {
            return canned;
        }
        if let Some(rule) = self.rules.iter().find(|r| r.method == req.method && req.path.contains(&r.path)) {
            return rule.answer.clone();
        }
        let base = self.base.clone();
        self.service.answer(&base, req)
    }

    fn authorized(&self, req: &Seen) -> bool {
        let auth = req.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        match &self.credential {
            Credential::Bearer(token) => auth.strip_prefix("Bearer ") == Some(token.as_str()),
            Credential::SharedKey(key) => {
                // Recomputed over what arrived: headers and URL as the server sees them.
                let query = if req.query.is_empty() { String::new() } else { format!("?{}", req.query) };
                let url = reqwest::Url::parse(&format!("{}{}{query}", self.base, req.path)).expect("url");
                auth == key.authorization(req.method.as_str(), &url, &req.headers)
                    && req.headers.contains_key("ocp-date")
            }
        }
    }
}

type Shared<S> = Arc<Mutex<Fake<S>>>;

async fn receive<S: Service>(
    State(fake): State<Shared<S>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = (!body.is_empty()).then(|| serde_json::from_slice(&body).expect("a JSON body"));
    let req =
        Seen { method, path: uri.path().to_owned(), query: uri.query().unwrap_or_default().to_owned(), headers, body };
    let mut fake = fake.lock().unwrap_or_else(PoisonError::into_inner);
    fake.seen.push(req.clone());
    fake.handle(&req).into_response()
}

/// A running fake service on 127.0.0.1: its URL and its state. Stops when dropped.
pub struct FakeServer<S> {
    pub url: String,
    fake: Shared<S>,
    task: tokio::task::JoinHandle<()>,
}

impl<S: Service> FakeServer<S> {
    /// Serves `S` on a free port; `credential` is what callers must present, given the URL.
    pub async fn start(credential: impl FnOnce(&str) -> Credential) -> Self {
        let fake = Arc::new(Mutex::new(Fake {
            base: String::new(),
            credential: Credential::Bearer(String::new()),
            seen: Vec::new(),
            canned: VecDeque::new(),
            rules: Vec::new(),
            bodies_checked: 0,
            service: S::default(),
        }));
        let (url, task) =
            crate::testing::serve_fake(Router::new().fallback(receive::<S>).with_state(fake.clone())).await;
        {
            let mut f = fake.lock().unwrap_or_else(PoisonError::into_inner);
            f.base.clone_from(&url);
            f.credential = credential(&url);
        }
        Self { url, fake, task }
    }

    /// The fake's state, to read or change.
    pub fn lock(&self) -> MutexGuard<'_, Fake<S>> {
        self.fake.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next request gets `answer`, whatever it is.
    pub fn answer_next(&self, answer: Canned) {
        self.lock().canned.push_back(answer);
    }

    /// Every `method` request whose path contains `path` gets `answer` until [`Self::accept`].
    pub fn refuse(&self, method: Method, path: &str, answer: Canned) {
        self.lock().rules.push(Rule { method, path: path.to_owned(), answer });
    }

    /// Drops every [`Self::refuse`] rule.
    pub fn accept(&self) {
        self.lock().rules.clear();
    }

    /// The requests received so far.
    #[must_use]
    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }
}

impl<S> Drop for FakeServer<S> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One page of a list answer from item `skip`, with the link to the next page under
/// `link_key` (`nextLink`, `odata.nextLink`) while more remain.
pub(super) fn page(items: &[Value], skip: usize, link_key: &str, next_link: impl FnOnce(usize) -> String) -> Canned {
    let mut body = json!({ "value": items.iter().skip(skip).take(PAGE).collect::<Vec<_>>() });
    if skip + PAGE < items.len() {
        body[link_key] = json!(next_link(skip + PAGE));
    }
    Canned::new(200, body)
}

/// Now, as Azure writes creation times.
pub(super) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("format")
}
