//! The demand log in Azure Blob Storage: what the Function App keeps between reconcile
//! passes for idle runners (see [`crate::idle::demand`] for the records and the history
//! maths; this module only stores the lines).

use async_trait::async_trait;
use reqwest::StatusCode;

use super::TokenSource;
use crate::idle::demand::DemandLog;

/// The Blob service version these calls are written against.
pub const BLOB_API_VERSION: &str = "2023-11-03";

/// The container in the Function App's storage account.
pub const STATE_CONTAINER: &str = "runner-dispatch-state";

/// Append blobs `runner-dispatch-state/demand/<pool>/<bucket>.jsonl` in the Function App's
/// storage account (`AzureWebJobsStorage__blobServiceUri`), with an Entra ID token for
/// `https://storage.azure.com/` from the app's identity (the role: Storage Blob Data
/// Contributor, which the Bicep grants). A blob holds at most 50,000 appends: a ten-minute
/// bucket takes 5,000 records a minute.
pub struct BlobDemandLog {
    client: reqwest::Client,
    /// `https://<account>.blob.core.windows.net`, no trailing slash.
    service: String,
    token: TokenSource,
}

impl std::fmt::Debug for BlobDemandLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobDemandLog").field("service", &self.service).finish_non_exhaustive()
    }
}

/// The token scope of Azure Storage.
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

impl BlobDemandLog {
    #[must_use]
    pub fn new(service: &str, token: TokenSource) -> Self {
        Self { client: super::http::http_client(), service: service.trim_end_matches('/').to_owned(), token }
    }

    fn blob_url(&self, pool: &str, bucket: &str) -> String {
        format!("{}/{STATE_CONTAINER}/demand/{pool}/{bucket}.jsonl", self.service)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
        let token = self.token.token().await.map_err(|e| e.to_string())?;
        let response = req
            .bearer_auth(token.expose())
            .header("x-ms-version", BLOB_API_VERSION)
            .send()
            .await
            .map_err(|e| super::http::transport_error("blob storage", &e).to_string())?;
        if response.status() == StatusCode::UNAUTHORIZED {
            self.token.invalidate().await;
        }
        Ok(response)
    }

    async fn fail(what: &str, response: reqwest::Response) -> String {
        let status = response.status().as_u16();
        let code = response.headers().get("x-ms-error-code").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        format!("{what}: HTTP {status} {code}")
    }

    /// Creates the container and then the append blob; "already exists" is fine.
    async fn create(&self, url: &str) -> Result<(), String> {
        let container = format!("{}/{STATE_CONTAINER}?restype=container", self.service);
        let r = self.send(self.client.put(&container).header("content-length", "0")).await?;
        if !(r.status().is_success() || r.status() == StatusCode::CONFLICT) {
            return Err(Self::fail("creating the state container", r).await);
        }
        let r = self
            .send(
                self.client
                    .put(url)
                    .header("x-ms-blob-type", "AppendBlob")
                    .header("if-none-match", "*")
                    .header("content-length", "0"),
            )
            .await?;
        if r.status().is_success() || matches!(r.status(), StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED) {
            Ok(())
        } else {
            Err(Self::fail("creating a demand blob", r).await)
        }
    }
}

#[async_trait]
impl DemandLog for BlobDemandLog {
    fn kind(&self) -> &'static str {
        "blob"
    }

    async fn append(&self, pool: &str, bucket: &str, lines: &[u8]) -> Result<(), String> {
        let url = self.blob_url(pool, bucket);
        let append = || self.client.put(format!("{url}?comp=appendblock")).body(lines.to_vec());
        let r = self.send(append()).await?;
        if r.status().is_success() {
            return Ok(());
        }
        if r.status() != StatusCode::NOT_FOUND {
            return Err(Self::fail("appending to a demand blob", r).await);
        }
        self.create(&url).await?;
        let r = self.send(append()).await?;
        if r.status().is_success() { Ok(()) } else { Err(Self::fail("appending to a demand blob", r).await) }
    }

    async fn read(&self, pool: &str, bucket: &str) -> Result<Vec<u8>, String> {
        let r = self.send(self.client.get(self.blob_url(pool, bucket))).await?;
        match r.status() {
            s if s.is_success() => {
                r.bytes().await.map(|b| b.to_vec()).map_err(|e| format!("reading a demand blob: {e}"))
            }
            StatusCode::NOT_FOUND => Ok(Vec::new()),
            _ => Err(Self::fail("reading a demand blob", r).await),
        }
    }
}
