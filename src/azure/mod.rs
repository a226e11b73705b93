//! The Azure side: credentials (azure_identity), and thin REST clients for Azure Batch
//! and Azure Container Instances implementing [`crate::provision::ComputeBackend`].
