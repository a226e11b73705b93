//! The live GitHub REST client (App and PAT auth, JIT, registration tokens, runners, jobs, hook deliveries).
