//! The idle runners' demand log in the Function App's storage account (append blobs),
//! against the Blob fake of `runner_dispatch::testing::azure` with the app's managed
//! identity (the test runs in a child process pointed at the fake identity endpoint).

use runner_dispatch::azure_test;
use runner_dispatch::testing::azure::blob::BlobFake;
use runner_dispatch::testing::azure::{credential, settings};

azure_test!(
    /// The first append creates the container and the append blob (never over an existing
    /// one), later appends just append, and the history reads back what was written.
    demand_log_appends_to_blobs_in_the_function_apps_storage_with_the_app_identity,
    async {
        use runner_dispatch::azure::demand_blob::{BlobDemandLog, STORAGE_SCOPE};
        use runner_dispatch::idle::demand::{Record, history, record};
        let fake = BlobFake::start().await;
        let url = fake.url.clone();
        let s = settings("http://unused", "http://unused", &[("AzureWebJobsStorage__blobServiceUri", &url)]);
        assert_eq!(s.azure.state_blob_url.as_deref(), Some(url.as_str()));
        let log = BlobDemandLog::new(&url, credential(&s).token_source(STORAGE_SCOPE));
        let now = time::OffsetDateTime::now_utc();
        let at = now.unix_timestamp() - 1;
        record(&log, "linux", &[Record::Arrival { job: 1, at }]).await;
        record(&log, "linux", &[Record::Arrival { job: 2, at }, Record::Started { job: 1, at, queued_s: 42, idle: false }]).await;
        let h = history(&log, "linux", now - time::Duration::hours(1), now).await.expect("history");
        assert_eq!(h.records.len(), 3, "{:?}", h.records);
        assert_eq!(h.demand().cold_start, Some(std::time::Duration::from_secs(42)));
        let calls = fake.lock().calls.clone();
        let creates = calls.iter().filter(|c| c.ends_with('?') && c.starts_with("PUT")).count();
        assert_eq!(creates, 1, "one blob created: {calls:?}");
        assert_eq!(calls.iter().filter(|c| c.ends_with("restype=container")).count(), 1, "{calls:?}");
        assert!(calls.iter().all(|c| !c.contains("demand/linux/") || c.contains("/runner-dispatch-state/demand/linux/")));
    }
);
