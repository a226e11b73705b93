//! ACI placements: one pool over resource groups, regions and subscriptions, against the
//! ARM fake of `runner_dispatch::testing::azure` (any subscription and resource group) and
//! the fake managed identity endpoint, through the provisioner's failover.

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use serde_json::{Value, json};

use runner_dispatch::azure::aci::AciBackend;
use runner_dispatch::azure_test;
use runner_dispatch::compute::{ComputeBackend, ProvisionError};
use runner_dispatch::config::{PoolsConfig, Settings};
use runner_dispatch::testing::azure::arm::{Arm, ArmFake};
use runner_dispatch::testing::azure::core::Service;
use runner_dispatch::testing::azure::{SUBNET, aci, retry_after_of, start_arm};

/// Every create in resource group `rg` is refused with `code` (and `Retry-After`).
fn refuse(fake: &ArmFake, rg: &str, status: u16, code: &str, retry_after: Option<u64>) {
    let answer = Arm::error(status, code, &format!("{code} in {rg}"));
    let answer = match retry_after {
        Some(seconds) => answer.retry_after(seconds),
        None => answer,
    };
    fake.refuse(Method::PUT, &format!("/resourceGroups/{rg}/"), answer);
}

/// PUTs that reached resource group `rg` (every PUT for "").
fn puts_in(fake: &ArmFake, rg: &str) -> usize {
    let scope = if rg.is_empty() { String::new() } else { format!("/resourceGroups/{rg}/") };
    fake.seen().iter().filter(|s| s.method == Method::PUT && s.path.contains(&scope)).count()
}
const OTHER_SUBSCRIPTION: &str = "11111111-1111-1111-1111-111111111111";

fn spread_pools(max_runners: u32) -> Arc<PoolsConfig> {
    let text = format!(
        r#"
[github]
allowed_owners = ["octo-org"]
check_job_queued = "never"
[[pools]]
name = "spread"
backend = "aci"
labels = ["linux"]
image = "myacr.azurecr.io/actions-runner:2.330.0"
max_runners = {max_runners}
placements = [
  {{ location = "westeurope", resource_group = "rg-a", subnet_id = "{SUBNET}" }},
  {{ location = "northeurope", resource_group = "rg-b", subscription_id = "{OTHER_SUBSCRIPTION}" }},
  {{ location = "swedencentral", resource_group = "rg-c" }},
]
"#
    );
    Arc::new(PoolsConfig::parse(&text).expect("placement pools"))
}

struct Spread {
    fake: ArmFake,
    provisioner: runner_dispatch::provision::Provisioner,
    github: Arc<runner_dispatch::testing::FakeGitHub>,
    backend: Arc<AciBackend>,
}

async fn spread(max_runners: u32) -> Spread {
    let fake = start_arm().await;
    let backend = Arc::new(aci(&fake.url, &[]).with_active_count_ttl(Duration::ZERO));
    let github = Arc::new(runner_dispatch::testing::FakeGitHub::default());
    let provisioner = runner_dispatch::provision::Provisioner::new(
        spread_pools(max_runners),
        github.clone(),
        runner_dispatch::backends::Backends::single(backend.clone()),
    );
    Spread { fake, provisioner, github, backend }
}

fn spread_message(job_id: u64) -> runner_dispatch::message::RunnerMessage {
    runner_dispatch::testing::provision_message(job_id, "spread", &["linux"])
}

impl Spread {
    fn jit_calls(&self) -> usize {
        self.github.calls().iter().filter(|c| c.starts_with("jit ")).count()
    }

    fn puts_in(&self, rg: &str) -> usize {
        puts_in(&self.fake, rg)
    }

    fn group_in(&self, rg: &str, name: &str) -> Option<Value> {
        self.fake.lock().group(rg, name).cloned()
    }
}

azure_test!(
    /// A quota refusal in the first placement: the same attempt creates in the second,
    /// with the one JIT configuration; the refused placement is passed over afterwards.
    aci_a_quota_refusal_in_one_placement_creates_in_the_next_in_the_same_attempt,
    async {
        let s = spread(10).await;
        refuse(&s.fake, "rg-a", 400, "ContainerGroupQuotaReached", Some(120));
        let out = s.provisioner.provision(&spread_message(1), 1).await.expect("created");
        assert!(matches!(out, runner_dispatch::provision::ProvisionOutcome::Created { .. }), "{out:?}");
        assert_eq!(s.jit_calls(), 1);
        let group = s.group_in("rg-b", "ghr-1").expect("created in rg-b");
        assert_eq!(group["location"], "northeurope");
        assert_eq!(group["tags"]["runner-dispatch-placement"], "northeurope");
        assert!(group["properties"].get("subnetIds").is_none(), "rg-a's subnet is regional: not used elsewhere");
        assert!(s.fake.lock().groups.keys().all(|(sub, r, _)| r != "rg-b" || sub == OTHER_SUBSCRIPTION));
        // The next job skips the paused placement: no PUT in rg-a.
        let before = s.puts_in("rg-a");
        s.provisioner.provision(&spread_message(2), 1).await.expect("created");
        assert_eq!(s.puts_in("rg-a"), before);
        assert!(s.group_in("rg-b", "ghr-2").is_some());
    }
);

azure_test!(
    /// A region out of capacity (409 ServiceUnavailable) fails over the same way, in
    /// order of preference.
    aci_a_capacity_refusal_fails_over_in_order_of_preference,
    async {
        let s = spread(10).await;
        refuse(&s.fake, "rg-a", 409, "ServiceUnavailable", None);
        refuse(&s.fake, "rg-b", 400, "ContainerGroupQuotaReached", None);
        s.provisioner.provision(&spread_message(3), 1).await.expect("created");
        assert!(s.group_in("rg-c", "ghr-3").is_some());
        assert_eq!((s.puts_in("rg-a"), s.puts_in("rg-b"), s.puts_in("rg-c")), (1, 1, 1));
        assert_eq!(s.jit_calls(), 1);
    }
);

azure_test!(
    /// Every placement refusing: a deferral until the earliest is free; the next request
    /// is deferred before any GitHub call.
    aci_all_placements_paused_is_a_deferral_that_costs_no_github_call,
    async {
        let s = spread(10).await;
        for rg in ["rg-a", "rg-b", "rg-c"] {
            refuse(&s.fake, rg, 400, "ContainerGroupQuotaReached", Some(if rg == "rg-b" { 60 } else { 600 }));
        }
        let e = s.provisioner.provision(&spread_message(4), 1).await.expect_err("all refused");
        assert!(matches!(e, ProvisionError::Deferred { .. }), "{e:?}");
        assert_eq!(retry_after_of(&e), Some(Duration::from_secs(60)), "the earliest placement");
        let calls = s.github.calls().len();
        let e = s.provisioner.provision(&spread_message(5), 1).await.expect_err("still paused");
        assert!(matches!(e, ProvisionError::Deferred { .. }), "{e:?}");
        assert_eq!(s.github.calls().len(), calls, "a paused pool spent a GitHub call");
    }
);

azure_test!(
    /// The name is the same everywhere: a group already in the second placement (made
    /// before a crash, say) means no create in the first.
    aci_a_group_already_in_another_placement_means_no_create,
    async {
        let s = spread(10).await;
        s.fake.lock().insert(
            OTHER_SUBSCRIPTION,
            "rg-b",
            json!({"name": "ghr-6", "tags": {"runner-dispatch-pool": "spread", "runner-dispatch-job-id": "6"}, "properties": {"provisioningState": "Succeeded"}}),
        );
        let out = s.provisioner.provision(&spread_message(6), 1).await.expect("exists");
        assert_eq!(out, runner_dispatch::provision::ProvisionOutcome::AlreadyExists);
        assert_eq!(s.puts_in("rg-a") + s.puts_in("rg-b") + s.puts_in("rg-c"), 0);
        assert_eq!(s.jit_calls(), 0);
    }
);

azure_test!(
    /// max_runners counts every placement; listing and deleting reach every placement.
    aci_caps_listing_and_deletion_span_placements,
    async {
        let s = spread(2).await;
        s.provisioner.provision(&spread_message(7), 1).await.expect("a");
        refuse(&s.fake, "rg-a", 400, "ContainerGroupQuotaReached", Some(300));
        s.provisioner.provision(&spread_message(8), 1).await.expect("b");
        assert!(s.group_in("rg-a", "ghr-7").is_some() && s.group_in("rg-b", "ghr-8").is_some());
        let e = s.provisioner.provision(&spread_message(9), 1).await.expect_err("capped");
        assert!(e.to_string().contains("max_runners (2/2)"), "{e}");
        let p = spread_pools(2).pool("spread").map(|p| (**p).clone()).expect("pool");
        let mut names: Vec<String> = s.backend.list(&p).await.expect("list").into_iter().map(|c| c.name).collect();
        names.sort();
        assert_eq!(names, ["ghr-7", "ghr-8"]);
        // Cleanup finds the runner that ran the job wherever it is.
        let mut done = spread_message(8);
        done.kind = runner_dispatch::message::MessageKind::Cleanup;
        done.ran_on = Some("ghr-8".into());
        done.ran_on_id = s.github.runners.lock().unwrap().iter().find(|r| r.name == "ghr-8").map(|r| r.id);
        assert_eq!(s.provisioner.cleanup(&done).await.expect("cleanup").deleted, ["ghr-8"]);
        assert!(s.group_in("rg-b", "ghr-8").is_none());
        s.backend.delete(&p, "ghr-7").await.expect("delete");
        assert!(s.group_in("rg-a", "ghr-7").is_none());
    }
);

azure_test!(
    /// Both transports: the host's queue invocation and the standalone server's admin
    /// route reach the same failover (here, rg-a out of capacity: the group goes to rg-b).
    aci_placements_fail_over_on_both_transports,
    async {
        let token = "placement-admin-token-0123456789abcdef";
        for standalone in [false, true] {
            let fake = start_arm().await;
            refuse(&fake, "rg-a", 409, "ServiceUnavailable", None);
            let dir = tempfile::tempdir().expect("dir");
            let settings = Settings { admin_token: Some(token.into()), ..runner_dispatch::testing::settings() };
            let app = runner_dispatch::testing::spawn_app_with_settings(
                &settings,
                spread_pools(10),
                Arc::new(aci(&fake.url, &[])),
                standalone.then_some(dir.path()),
                runner_dispatch::testing::fast_queue(),
                runner_dispatch::server::RAW_REQUEST_TIMEOUT,
            )
            .await;
            let job = 20 + u64::from(standalone);
            let invocation = json!({"Data": {"message": serde_json::to_value(spread_message(job)).unwrap()}, "Metadata": {"DequeueCount": 1}});
            let mut req = app.client.post(app.url("/provision-runner")).json(&invocation);
            if standalone {
                req = req.bearer_auth(token);
            }
            let resp = req.send().await.expect("send");
            assert_eq!(resp.status(), 200, "standalone: {standalone}");
            let created: Vec<String> = fake.lock().groups.keys().map(|(_, rg, _)| rg.clone()).collect();
            assert_eq!(created, ["rg-b"], "standalone: {standalone}");
            assert_eq!(puts_in(&fake, ""), 2, "one refused, one created");
        }
    }
);
