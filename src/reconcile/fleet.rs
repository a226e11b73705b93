//! What the reconcile passes may ask of the provisioner: the few operations they need,
//! named here, instead of its fields.

use std::future::Future;

use time::OffsetDateTime;

use crate::compute::ComputeInfo;
use crate::config::{Pool, PoolsConfig};
use crate::github::{Delivery, JobContext, JobState, RunnerDeletion, RunnerInfo};
use crate::idle::demand::{History, Record};
use crate::provision::Provisioner;

/// The operations of a reconcile pass and of `status`. Errors are the callee's message
/// (what the logs and `status` print).
pub(crate) trait Fleet: Sync {
    /// The deployment's pools and GitHub settings.
    fn pools(&self) -> &PoolsConfig;
    /// Now, by the provisioner's clock.
    fn now(&self) -> OffsetDateTime;
    /// Where a pool's idle runners register, one context per target.
    fn idle_targets(&self, pool: &Pool) -> Vec<JobContext>;
    /// The registration context of an `idle_targets` entry.
    fn idle_context(&self, target: &str) -> JobContext;
    /// The registration context of a job in `repository`.
    fn job_context(&self, repository: &str, owner: &str) -> JobContext;
    /// Every compute of the pool that runner-dispatch may have made.
    fn list_compute(&self, pool: &Pool) -> impl Future<Output = Result<Vec<ComputeInfo>, String>> + Send;
    fn delete_compute(&self, pool: &Pool, name: &str) -> impl Future<Output = Result<(), String>> + Send;
    /// The runners registered at a registration target.
    fn list_registrations(&self, ctx: &JobContext) -> impl Future<Output = Result<Vec<RunnerInfo>, String>> + Send;
    fn delete_registration(
        &self,
        ctx: &JobContext,
        runner_id: u64,
    ) -> impl Future<Output = Result<RunnerDeletion, String>> + Send;
    fn job_state(&self, ctx: &JobContext, job_id: u64) -> impl Future<Output = Result<JobState, String>> + Send;
    fn list_deliveries(&self, since: OffsetDateTime) -> impl Future<Output = Result<Vec<Delivery>, String>> + Send;
    fn redeliver(&self, delivery_id: u64) -> impl Future<Output = Result<(), String>> + Send;
    /// Makes one idle runner of the pool at a registration target.
    fn provision_idle(&self, pool: &Pool, ctx: &JobContext) -> impl Future<Output = Result<String, String>> + Send;
    /// The idle level a pass left, for top-ups at a job's arrival.
    fn note_idle_level(&self, pool: &Pool, ctx: &JobContext, level: usize);
    /// The pool's demand log between `since` and `now`.
    fn demand_history(
        &self,
        pool: &Pool,
        since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<History, String>> + Send;
    fn record_demand(&self, pool: &Pool, target: &str, records: &[Record]) -> impl Future<Output = ()> + Send;
    /// Whether this process made the JIT registration with this id.
    fn made_registration(&self, runner_id: u64) -> bool;
    /// Whether a registration of this name is held for a later attempt.
    fn holds_registration(&self, name: &str) -> bool;
}

impl Fleet for Provisioner {
    fn pools(&self) -> &PoolsConfig {
        &self.pools
    }

    fn now(&self) -> OffsetDateTime {
        Provisioner::now(self)
    }

    fn idle_targets(&self, pool: &Pool) -> Vec<JobContext> {
        Provisioner::idle_targets(self, pool)
    }

    fn idle_context(&self, target: &str) -> JobContext {
        Provisioner::idle_context(self, target)
    }

    fn job_context(&self, repository: &str, owner: &str) -> JobContext {
        self.context_for(repository, owner, None)
    }

    async fn list_compute(&self, pool: &Pool) -> Result<Vec<ComputeInfo>, String> {
        self.backends().for_pool(pool).list(pool).await.map_err(|e| e.to_string())
    }

    async fn delete_compute(&self, pool: &Pool, name: &str) -> Result<(), String> {
        self.backends().for_pool(pool).delete(pool, name).await.map_err(|e| e.to_string())
    }

    async fn list_registrations(&self, ctx: &JobContext) -> Result<Vec<RunnerInfo>, String> {
        self.registry().list_runners(ctx).await.map_err(|e| e.to_string())
    }

    async fn delete_registration(&self, ctx: &JobContext, runner_id: u64) -> Result<RunnerDeletion, String> {
        self.registry().delete_runner(ctx, runner_id).await.map_err(|e| e.to_string())
    }

    async fn job_state(&self, ctx: &JobContext, job_id: u64) -> Result<JobState, String> {
        self.registry().job_state(ctx, job_id).await.map_err(|e| e.to_string())
    }

    async fn list_deliveries(&self, since: OffsetDateTime) -> Result<Vec<Delivery>, String> {
        self.registry().list_deliveries(since).await.map_err(|e| e.to_string())
    }

    async fn redeliver(&self, delivery_id: u64) -> Result<(), String> {
        self.registry().redeliver(delivery_id).await.map_err(|e| e.to_string())
    }

    async fn provision_idle(&self, pool: &Pool, ctx: &JobContext) -> Result<String, String> {
        Provisioner::provision_idle(self, pool, ctx).await.map_err(|e| e.to_string())
    }

    fn note_idle_level(&self, pool: &Pool, ctx: &JobContext, level: usize) {
        Provisioner::note_idle_level(self, pool, ctx, level);
    }

    async fn demand_history(&self, pool: &Pool, since: OffsetDateTime, now: OffsetDateTime) -> Result<History, String> {
        crate::idle::demand::history(&*self.demand, &pool.name, since, now).await
    }

    async fn record_demand(&self, pool: &Pool, target: &str, records: &[Record]) {
        crate::idle::demand::record_for(&*self.demand, &pool.name, target, records).await;
    }

    fn made_registration(&self, runner_id: u64) -> bool {
        Provisioner::made_registration(self, runner_id)
    }

    fn holds_registration(&self, name: &str) -> bool {
        Provisioner::holds_registration(self, name)
    }
}
