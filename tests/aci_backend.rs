//! The ACI backend (one placement) against local fakes of the managed identity endpoint
//! and ARM (`runner_dispatch::testing::azure`). Every body it sends is checked against
//! Microsoft's model, as Azure would refuse it. Each test runs in a child process pointed
//! at the fake identity endpoint (see `azure_test!`). Placements: tests/aci_placements.rs;
//! what every backend must do: tests/compute_contract.rs.

use std::time::Duration;

use axum::http::Method;
use serde_json::{Value, json};

use runner_dispatch::azure::aci::AciBackend;
use runner_dispatch::azure::aci::container_group_body;
use runner_dispatch::azure_test;
use runner_dispatch::compute::{ComputeBackend, ComputeState, CreateOutcome};
use runner_dispatch::config::Pool;
use runner_dispatch::testing::azure::arm::{Arm, ArmFake};
use runner_dispatch::testing::azure::core::{Fake, Service};
use runner_dispatch::testing::azure::identity::token_hits;
use runner_dispatch::testing::azure::{
    Canned, JIT_SECRET, JOBS_ID, PULL_ID, SUBNET, SUBSCRIPTION, Seen, USER_ASSIGNED_CLIENT_ID, aci, aci_part,
    jit_request, pool, registration_request, retry_after_of, start_arm,
};

fn arm_error(status: u16, code: &str, message: &str) -> Canned {
    Arm::error(status, code, message)
}

/// A group of `pool` named `ghr-<job id>` in `state`, as ARM returns it.
fn group_of(name: &str, pool: &str, state: &str) -> Value {
    let provisioning = if state == "Failed" { "Failed" } else { "Succeeded" };
    json!({
        "name": name,
        "tags": {"runner-dispatch-pool": pool, "runner-dispatch-job-id": name.rsplit('-').next().unwrap()},
        "properties": {"provisioningState": provisioning, "instanceView": {"state": state}, "osType": "Linux", "containers": []},
    })
}

/// GETs of the group list (pages) and of single groups.
fn list_and_read_calls(f: &Fake<Arm>) -> (usize, usize) {
    let gets = f.seen.iter().filter(|s| s.method == Method::GET);
    let lists = gets.clone().filter(|s| s.path.ends_with("/containerGroups")).count();
    (lists, gets.count() - lists)
}

/// The ARM fake, the ACI backend over it, and pool `name`.
async fn over_arm(name: &str) -> (ArmFake, AciBackend, Pool) {
    let fake = start_arm().await;
    let backend = aci(&fake.url, &[]);
    (fake, backend, pool(name))
}

fn puts(f: &Fake<Arm>) -> Vec<Seen> {
    f.seen.iter().filter(|s| s.method == Method::PUT).cloned().collect()
}

azure_test!(
    /// The PUT carries the managed identity's token for the ARM audience, create-only,
    /// and a body Microsoft's model accepts (subnet, pull identity, jobs' identity).
    aci_create_puts_a_schema_valid_body_with_the_managed_identity_token,
    async {
        let (fake, backend, p) = over_arm("linux-aci").await;
        let outcome = backend.create(&p, &jit_request(&p, 42)).await.expect("created");
        assert_eq!(outcome, CreateOutcome::Created);
        let hits = token_hits().await;
        let f = fake.lock();
        let put = puts(&f).pop().expect("one PUT");
        assert_eq!(
            put.path,
            format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-runners/providers/Microsoft.ContainerInstance/containerGroups/ghr-42")
        );
        assert_eq!(put.query, "api-version=2025-09-01");
        assert_eq!(put.headers.get("if-none-match").unwrap(), "*");
        assert_eq!(f.bodies_checked, 1);
        let body = put.body.expect("body");
        assert_eq!(body["properties"]["restartPolicy"], "Never");
        assert_eq!(body["properties"]["osType"], "Linux");
        assert_eq!(body["location"], "westeurope");
        assert_eq!(body["properties"]["subnetIds"], json!([{ "id": SUBNET }]));
        assert_eq!(
            body["properties"]["imageRegistryCredentials"],
            json!([{ "server": "myacr.azurecr.io", "identity": PULL_ID }])
        );
        assert_eq!(body["identity"]["type"], "UserAssigned");
        let ids: Vec<&String> = body["identity"]["userAssignedIdentities"].as_object().unwrap().keys().collect();
        assert_eq!(ids, vec![PULL_ID, JOBS_ID]);
        let container = &body["properties"]["containers"][0];
        assert_eq!(container["name"], "runner");
        assert_eq!(container["properties"]["image"], "myacr.azurecr.io/actions-runner:2.330.0");
        assert_eq!(container["properties"]["resources"]["requests"], json!({"cpu": 2.0, "memoryInGB": 4.0}));
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].resource, fake.url, "the ARM audience follows AZURE_RESOURCE_MANAGER_URL");
        assert!(hits[0].identity_header_ok && hits[0].api_version == "2019-08-01");
        assert_eq!(hits[0].client_id, None, "system-assigned without AZURE_CLIENT_ID");
    }
);

azure_test!(
    /// One token request for many calls; the user-assigned client id goes along.
    aci_token_is_fetched_once_and_cached_across_calls_with_the_user_assigned_client_id,
    async {
        let fake = start_arm().await;
        let arm = fake.url.clone();
        let backend = aci(&arm, &[("AZURE_CLIENT_ID", USER_ASSIGNED_CLIENT_ID)]);
        let p = pool("linux-aci");
        assert!(backend.find(&p, "ghr-1").await.expect("find").is_none());
        backend.create(&p, &jit_request(&p, 1)).await.expect("create");
        assert!(backend.find(&p, "ghr-1").await.expect("find").is_some());
        backend.list(&p).await.expect("list");
        backend.delete(&p, "ghr-1").await.expect("delete");
        let hits = token_hits().await;
        assert_eq!(hits.len(), 1, "fetched once: {hits:?}");
        assert_eq!(hits[0].client_id.as_deref(), Some(USER_ASSIGNED_CLIENT_ID));
    }
);

azure_test!(
    /// Secrets only in `secureValue`, plain values in `value`; the same request gives
    /// the same JSON, with the job's tags.
    aci_secrets_go_only_in_secure_value_and_the_body_is_deterministic_with_tags,
    async {
        let (fake, backend, p) = over_arm("linux-aci").await;
        let req = jit_request(&p, 7);
        backend.create(&p, &req).await.expect("created");
        let sent = puts(&fake.lock()).pop().unwrap().body.unwrap();
        assert_eq!(sent, container_group_body(&p, aci_part(&p), &req, "westeurope"), "what is sent is the pure builder's body");
        assert_eq!(container_group_body(&p, aci_part(&p), &req, "westeurope"), container_group_body(&p, aci_part(&p), &req, "westeurope"));
        assert_eq!(serde_json::to_string(&sent).unwrap(), serde_json::to_string(&container_group_body(&p, aci_part(&p), &req, "westeurope")).unwrap());
        let env = sent["properties"]["containers"][0]["properties"]["environmentVariables"].as_array().unwrap().clone();
        assert_eq!(
            env,
            vec![
                json!({"name": "RUNNER_JITCONFIG", "secureValue": JIT_SECRET}),
                json!({"name": "CUSTOM", "value": "plain-value"}),
            ]
        );
        for e in &env {
            assert_ne!(e.get("value").and_then(Value::as_str), Some(JIT_SECRET));
        }
        assert_eq!(
            sent["tags"],
            json!({
                "cost-center": "1234",
                "runner-dispatch-pool": "linux-aci",
                "runner-dispatch-job-id": "7",
                "runner-dispatch-run-id": "9001",
                "runner-dispatch-repository": "octo-org/api",
                "runner-dispatch-runner-id": "4242",
                "runner-dispatch-job-created-at": "2026-11-23T15:00:00Z",
            })
        );
        let found = backend.find(&p, "ghr-7").await.expect("find").expect("exists");
        assert_eq!(found.job_id, Some(7));
        assert_eq!(found.repository.as_deref(), Some("octo-org/api"));
        assert_eq!(found.state, ComputeState::Running);
        assert!(found.created_at.is_some());
    }
);

azure_test!(
    /// Windows, no VNet, no identities, registration-mode variables: still valid.
    aci_windows_body_with_registration_variables_is_schema_valid,
    async {
        let (fake, backend, p) = over_arm("windows-aci").await;
        let req = registration_request(&p, 8);
        assert_eq!(backend.create(&p, &req).await.expect("created"), CreateOutcome::Created);
        let body = puts(&fake.lock()).pop().unwrap().body.unwrap();
        assert_eq!(body["properties"]["osType"], "Windows");
        assert!(body.get("identity").is_none() && body["properties"].get("subnetIds").is_none());
        assert!(body["properties"].get("imageRegistryCredentials").is_none());
        let env = body["properties"]["containers"][0]["properties"]["environmentVariables"].clone();
        assert!(env.as_array().unwrap().contains(&json!({"name": "RUNNER_TOKEN", "secureValue": JIT_SECRET})));
        assert_eq!(fake.lock().bodies_checked, 1);
    }
);

azure_test!(
    /// An expired or revoked token is a deferral. (Our cache drops the token; the
    /// managed identity credential keeps its own cache until five minutes before expiry.)
    aci_a_401_is_retryable,
    async {
        let (fake, backend, p) = over_arm("linux-aci").await;
        fake.answer_next(arm_error(401, "ExpiredAuthenticationToken", "expired"));
        let e = backend.find(&p, "ghr-1").await.expect_err("401");
        assert!(e.is_retryable() && e.to_string().contains("ExpiredAuthenticationToken"), "{e}");
        assert_eq!(backend.find(&p, "ghr-1").await.expect("next call"), None);
    }
);

azure_test!(aci_conflict_on_create_is_already_exists, async {
    let (fake, backend, p) = over_arm("linux-aci").await;
    fake.answer_next(arm_error(409, "Conflict", "The container group already exists."));
    assert_eq!(backend.create(&p, &jit_request(&p, 5)).await.expect("ok"), CreateOutcome::AlreadyExists);
    fake.answer_next(arm_error(412, "PreconditionFailed", "If-None-Match"));
    assert_eq!(backend.create(&p, &jit_request(&p, 5)).await.expect("ok"), CreateOutcome::AlreadyExists);
});

azure_test!(
    /// Quota and capacity are deferrals whatever the status: `ContainerGroupQuotaReached`
    /// comes as a 400, `ServiceUnavailable` as a 409 (which is not "already exists").
    aci_quota_and_capacity_error_codes_are_retryable,
    async {
        let (fake, backend, p) = over_arm("linux-aci").await;
        fake.answer_next(arm_error(
            400,
            "ContainerGroupQuotaReached",
            "Resource type 'Microsoft.ContainerInstance/containerGroups' container group quota 'StandardCores' exceeded in region 'westeurope'. Limit: '10', Usage: '10' Requested: '2'.",
        ));
        let e = backend.create(&p, &jit_request(&p, 6)).await.expect_err("quota");
        assert!(e.is_retryable(), "{e}");
        assert!(e.to_string().contains("ContainerGroupQuotaReached"), "{e}");
        fake.answer_next(arm_error(
            409,
            "ServiceUnavailable",
            "The requested resource is not available in the location 'westeurope' at this moment.",
        ));
        let e = backend.create(&p, &jit_request(&p, 6)).await.expect_err("capacity");
        assert!(e.is_retryable(), "{e}");
    }
);

azure_test!(aci_throttling_is_retryable_and_honours_retry_after, async {
    let (fake, backend, p) = over_arm("linux-aci").await;
    fake.answer_next(arm_error(429, "TooManyRequests", "throttled").retry_after(37));
    let e = backend.create(&p, &jit_request(&p, 9)).await.expect_err("throttled");
    assert!(e.is_retryable());
    assert_eq!(retry_after_of(&e), Some(Duration::from_secs(37)));
    fake.answer_next(arm_error(500, "InternalServerError", "oops"));
    assert!(backend.find(&p, "ghr-9").await.expect_err("5xx").is_retryable());
});

azure_test!(
    /// A bad image is permanent, with a reason that helps and no secret in it.
    aci_inaccessible_image_is_permanent_with_a_helpful_reason_without_secrets,
    async {
        let (fake, backend, p) = over_arm("linux-aci").await;
        fake.answer_next(arm_error(
            400,
            "InaccessibleImage",
            &format!("The image 'myacr.azurecr.io/actions-runner:2.330.0' in container group 'ghr-10' is not accessible. Please check the image and registry credential. env={JIT_SECRET}"),
        ));
        let e = backend.create(&p, &jit_request(&p, 10)).await.expect_err("bad image");
        assert!(!e.is_retryable(), "{e}");
        let reason = e.to_string();
        assert!(reason.contains("InaccessibleImage") && reason.contains("image_pull_identity"), "{reason}");
        assert!(!reason.contains(JIT_SECRET), "{reason}");
        fake.answer_next(arm_error(403, "AuthorizationFailed", "no write"));
        let e = backend.create(&p, &jit_request(&p, 10)).await.expect_err("forbidden");
        assert!(!e.is_retryable() && e.to_string().contains("Contributor"), "{e}");
    }
);

azure_test!(aci_find_of_a_missing_group_is_none_and_of_a_failed_group_is_failed, async {
    let (fake, backend, p) = over_arm("linux-aci").await;
    assert_eq!(backend.find(&p, "ghr-404").await.expect("find"), None);
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/tests/fixtures/azure-aci/ContainerGroupsGet_Failed.2025-09-01.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    fake.answer_next(Canned::new(200, example["responses"]["200"]["body"].clone()));
    let found = backend.find(&p, "demo1").await.expect("find").expect("exists");
    assert_eq!(found.state, ComputeState::Failed);
    assert!(found.state.is_finished());
});

azure_test!(aci_invalid_names_are_refused_before_calling_azure, async {
    let (fake, backend, p) = over_arm("linux-aci").await;
    let mut req = jit_request(&p, 1);
    req.name = "Bad_Name".into();
    assert!(!backend.create(&p, &req).await.expect_err("invalid").is_retryable());
    assert!(fake.lock().seen.is_empty());
});

azure_test!(
    /// Paging through `nextLink`, and only groups tagged with this pool.
    aci_list_follows_next_link_and_keeps_only_the_pools_groups,
    async {
        let (fake, backend, p) = over_arm("linux-aci").await;
        {
            let mut f = fake.lock();
            for (name, pool, state) in [
                ("ghr-1", "linux-aci", "Running"),
                ("ghr-2", "windows-aci", "Running"),
                ("ghr-3", "linux-aci", "Succeeded"),
                ("ghr-4", "linux-aci", "Pending"),
                ("ghr-6", "linux-aci", "Failed"),
                ("other", "", "Running"),
            ] {
                f.insert(SUBSCRIPTION, "rg-runners", group_of(name, pool, state));
            }
        }
        let mut listed: Vec<(String, ComputeState, Option<u64>)> =
            backend.list(&p).await.expect("list").into_iter().map(|c| (c.name, c.state, c.job_id)).collect();
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            listed,
            vec![
                ("ghr-1".into(), ComputeState::Running, Some(1)),
                ("ghr-3".into(), ComputeState::Succeeded, Some(3)),
                ("ghr-4".into(), ComputeState::Pending, Some(4)),
                ("ghr-6".into(), ComputeState::Failed, Some(6)),
            ]
        );
        let (lists, reads) = list_and_read_calls(&fake.lock());
        assert_eq!(lists, 3, "6 groups at 2 per page");
        assert_eq!(reads, 3, "the list omits instance views: read the pool's groups not known to be failed");
    }
);

azure_test!(
    /// `max_runners` counts unfinished groups with one list call, reused for seconds.
    aci_active_count_is_cached_for_a_few_seconds,
    async {
        let (fake, backend, p) = over_arm("linux-aci").await;
        {
            let mut f = fake.lock();
            f.insert(SUBSCRIPTION, "rg-runners", group_of("ghr-1", "linux-aci", "Running"));
            f.insert(SUBSCRIPTION, "rg-runners", group_of("ghr-2", "linux-aci", "Failed"));
            f.insert(SUBSCRIPTION, "rg-runners", group_of("ghr-3", "linux-aci", "Pending"));
            f.insert(SUBSCRIPTION, "rg-runners", group_of("ghr-9", "windows-aci", "Running"));
        }
        assert_eq!(backend.active_count(&p).await.expect("count"), Some(2), "failed groups do not count");
        fake.lock().insert(SUBSCRIPTION, "rg-runners", group_of("ghr-5", "linux-aci", "Running"));
        assert_eq!(backend.active_count(&p).await.expect("count"), Some(2), "cached");
        assert_eq!(list_and_read_calls(&fake.lock()), (2, 0), "one list call (two pages), no reads");
        backend.create(&p, &jit_request(&p, 6)).await.expect("create");
        assert_eq!(backend.active_count(&p).await.expect("count"), Some(3), "our own create counts at once");
        backend.delete(&p, "ghr-6").await.expect("delete");
        assert_eq!(backend.active_count(&p).await.expect("count"), Some(2), "and our own delete");
        assert_eq!(list_and_read_calls(&fake.lock()), (2, 0), "still one list call");
        let short = aci(&fake.url, &[]).with_active_count_ttl(Duration::from_millis(1));
        assert_eq!(short.active_count(&p).await.unwrap(), Some(3), "ghr-1, ghr-3 and ghr-5");
    }
);

azure_test!(aci_delete_of_a_missing_group_is_ok, async {
    let (fake, backend, p) = over_arm("linux-aci").await;
    backend.delete(&p, "ghr-77").await.expect("missing is fine");
    fake.answer_next(arm_error(404, "ResourceNotFound", "gone"));
    backend.delete(&p, "ghr-77").await.expect("404 is fine");
    fake.answer_next(arm_error(409, "Conflict", "busy"));
    assert!(backend.delete(&p, "ghr-77").await.is_err());
});
