//! `PoolsConfig::parse` on arbitrary UTF-8: never panics, and every problem names a key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runner_dispatch::config::PoolsConfig;

fuzz_target!(|text: &str| {
    match PoolsConfig::parse(text) {
        Ok(config) => {
            assert!(!config.pools.is_empty());
            for w in &config.warnings {
                assert!(!w.key.trim().is_empty(), "warning without a key: {w:?}");
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty());
            assert!(errors.0.iter().any(|p| !p.warning), "errors without an error: {errors:?}");
            for p in &errors.0 {
                assert!(!p.key.trim().is_empty(), "problem without a key: {p:?}");
            }
        }
    }
});
