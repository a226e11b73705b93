//! A fake Blob service (the Function App's storage account) for the idle runners' demand
//! log: create a container, create an append blob (never over an existing one), append a
//! block, read a blob.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::identity::token_for;

/// What the account holds, and every call as `METHOD /path?query`.
#[derive(Debug, Default)]
pub struct Blobs {
    pub blobs: BTreeMap<String, Vec<u8>>,
    pub container: bool,
    pub calls: Vec<String>,
}

/// A running Blob service on 127.0.0.1 that wants the managed identity's Storage token.
pub struct BlobFake {
    pub url: String,
    blobs: Arc<Mutex<Blobs>>,
    task: tokio::task::JoinHandle<()>,
}

impl BlobFake {
    pub async fn start() -> Self {
        let blobs: Arc<Mutex<Blobs>> = Arc::default();
        let (url, task) = crate::testing::serve_fake(Router::new().fallback(answer).with_state(blobs.clone())).await;
        Self { url, blobs, task }
    }

    pub fn lock(&self) -> MutexGuard<'_, Blobs> {
        self.blobs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for BlobFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn refusal(status: StatusCode, code: &'static str) -> Response {
    (status, [("x-ms-error-code", code)], "").into_response()
}

async fn answer(State(blobs): State<Arc<Mutex<Blobs>>>, req: Request) -> Response {
    let storage_token = format!("Bearer {}", token_for("https://storage.azure.com"));
    let headers = req.headers().clone();
    let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if header("authorization").as_deref() != Some(storage_token.as_str()) || header("x-ms-version").is_none() {
        return refusal(StatusCode::FORBIDDEN, "AuthenticationFailed");
    }
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.expect("body");
    let mut f = blobs.lock().unwrap_or_else(PoisonError::into_inner);
    f.calls.push(format!("{method} {path}?{query}"));
    match (method.as_str(), query.as_str()) {
        ("PUT", "restype=container") => {
            if f.container {
                return refusal(StatusCode::CONFLICT, "ContainerAlreadyExists");
            }
            f.container = true;
            StatusCode::CREATED.into_response()
        }
        ("PUT", "comp=appendblock") => {
            let container = f.container;
            match f.blobs.get_mut(&path) {
                Some(b) => {
                    b.extend_from_slice(&body);
                    StatusCode::CREATED.into_response()
                }
                None if container => refusal(StatusCode::NOT_FOUND, "BlobNotFound"),
                None => refusal(StatusCode::NOT_FOUND, "ContainerNotFound"),
            }
        }
        ("PUT", "") => {
            assert_eq!(header("x-ms-blob-type").as_deref(), Some("AppendBlob"));
            assert_eq!(header("if-none-match").as_deref(), Some("*"), "creating must never truncate a blob");
            if !f.container {
                return refusal(StatusCode::NOT_FOUND, "ContainerNotFound");
            }
            f.blobs.entry(path).or_default();
            StatusCode::CREATED.into_response()
        }
        ("GET", "") => match f.blobs.get(&path) {
            Some(b) => b.clone().into_response(),
            None => refusal(StatusCode::NOT_FOUND, "BlobNotFound"),
        },
        _ => (StatusCode::IM_A_TEAPOT, "unexpected").into_response(),
    }
}
