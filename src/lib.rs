//! runner-dispatch: one ephemeral GitHub Actions runner per queued job, on Azure.
//!
//! The crate is laid out along the pipeline: [`webhook`] accepts and parses GitHub
//! deliveries, [`routing`] chooses a pool, [`message`] is the queue contract,
//! [`provision`] turns a request into a runner (idempotently), [`reconcile`] repairs
//! what webhooks missed, and [`server`] / [`functions_host`] expose it all over the
//! two transports (standalone HTTP and the Azure Functions custom handler).

pub mod app;
pub mod azure;
pub mod backends;
pub mod cli;
pub mod compute;
pub mod config;
pub mod demo;
pub mod disposition;
pub mod duration;
pub mod events;
pub mod functions_host;
pub mod github;
pub mod glob;
pub mod idle;
pub mod manifest;
pub mod message;
pub mod names;
pub mod provision;
pub mod reconcile;
pub mod routing;
pub mod secret;
pub mod server;
pub mod spool;
pub mod telemetry;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod timestamps;
pub mod tls;
pub mod webhook;
pub mod worker;
