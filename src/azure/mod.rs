//! The Azure side: credentials (azure_identity), and thin REST clients for Azure Batch
//! and Azure Container Instances implementing [`crate::provision::ComputeBackend`].

pub mod aci;
pub mod batch;
pub mod credential;
pub mod http;

pub use aci::{AciBackend, container_group_body};
pub use batch::{BatchAuth, BatchBackend, batch_job_body, batch_task_body};
pub use credential::{AzureCredential, CredentialError, CredentialKind, SharedKey, TokenSource};
