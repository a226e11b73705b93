//! Shared helpers for integration tests: the crate's `testing` module (feature `test-util`,
//! turned on for tests by the dev-dependency on this crate), so `common::...` keeps working.
#![allow(unused_imports)]

pub use runner_dispatch::testing::*;
