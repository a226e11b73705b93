//! A compute backend whose creates answer from a script, for the algorithm's failure paths.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::compute::{ComputeBackend, ComputeInfo, ComputeRequest, ComputeState, CreateOutcome, ProvisionError};
use crate::config::{Backend, Pool};

/// A backend whose `create` answers from a script (then `Created`), recording every call.
#[derive(Default)]
pub struct ScriptedBackend {
    pub script: Mutex<VecDeque<Result<CreateOutcome, ProvisionError>>>,
    pub creates: Mutex<Vec<ComputeRequest>>,
    pub existing: Mutex<BTreeMap<String, ComputeInfo>>,
}

impl ScriptedBackend {
    pub fn with(script: Vec<Result<CreateOutcome, ProvisionError>>) -> Arc<Self> {
        Arc::new(Self { script: Mutex::new(script.into()), ..Self::default() })
    }

    pub fn create_count(&self) -> usize {
        self.creates.lock().expect("lock").len()
    }
}

#[async_trait]
impl ComputeBackend for ScriptedBackend {
    fn kind(&self) -> &'static str {
        "scripted"
    }

    async fn find(&self, _pool: &Pool, name: &str) -> Result<Option<ComputeInfo>, ProvisionError> {
        Ok(self.existing.lock().expect("lock").get(name).cloned())
    }

    async fn create(&self, pool: &Pool, request: &ComputeRequest) -> Result<CreateOutcome, ProvisionError> {
        self.creates.lock().expect("lock").push(request.clone());
        let next = self.script.lock().expect("lock").pop_front().unwrap_or(Ok(CreateOutcome::Created));
        if matches!(next, Ok(CreateOutcome::Created)) {
            self.existing
                .lock()
                .expect("lock")
                .insert(request.name.clone(), ComputeInfo::requested(pool, request, ComputeState::Pending));
        }
        next
    }

    async fn delete(&self, _pool: &Pool, name: &str) -> Result<(), ProvisionError> {
        self.existing.lock().expect("lock").remove(name);
        Ok(())
    }

    async fn list(&self, _pool: &Pool) -> Result<Vec<ComputeInfo>, ProvisionError> {
        Ok(self.existing.lock().expect("lock").values().cloned().collect())
    }

    async fn active_count(&self, pool: &Pool) -> Result<Option<usize>, ProvisionError> {
        Ok((pool.backend() == Backend::Aci).then(|| self.existing.lock().map(|e| e.len()).unwrap_or(0)))
    }
}
