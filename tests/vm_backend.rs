//! The VM backend (a fresh Azure VM per job) against a local fake of ARM
//! (`testing::FakeArmVms`), through the real `azure_identity` managed identity path
//! (`testing::managed_identity`: each test body runs in a child process). Every VM body the
//! backend sends is checked against Microsoft's model (`compute-virtual-machine.schema.json`);
//! the fake refuses a body that fails, as Azure would.

mod common;

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use common::managed_identity::{run_isolated, token_for, token_requests};
use common::*;
use runner_dispatch::azure::AzureCredential;
use runner_dispatch::azure::vm::{self, SUBNET_JOIN, VmBackend};
use runner_dispatch::backends::Backends;
use runner_dispatch::compute::{
    ComputeBackend, ComputeRequest, ComputeState, CreateOutcome, EnvValue, JobInfo, ProvisionError, Purpose,
};
use runner_dispatch::config::{Compute, Pool, PoolsConfig, Settings};
use runner_dispatch::provision::{ProvisionOutcome, Provisioner};
use runner_dispatch::reconcile::Reconciler;
use runner_dispatch::secret::Secret;

const JIT_SECRET: &str = "JIT-SECRET-eyJhbGciOiJub25lIn0-vm-do-not-leak";
const VM_POOLS: &str = include_str!("fixtures/pools/vm.toml");

macro_rules! vm_test {
    ($(#[$doc:meta])* $name:ident, $body:expr) => {
        $(#[$doc])*
        #[test]
        fn $name() {
            run_isolated(stringify!($name), || $body);
        }
    };
}

fn validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let path =
            format!("{}/tests/fixtures/azure-schemas/compute-virtual-machine.schema.json", env!("CARGO_MANIFEST_DIR"));
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("schema")).expect("json");
        jsonschema::draft202012::new(&schema).expect("valid schema")
    })
}

fn schema_errors(body: &Value) -> Vec<String> {
    validator().iter_errors(body).map(|e| format!("{e} at {}", e.instance_path)).collect()
}

/// ARM, checking every PUT body against Microsoft's model.
async fn start_arm() -> (String, FakeArmVms) {
    let fake = FakeArmVms::new(Arc::new(|b: &Value| schema_errors(b)));
    (fake.serve().await, fake)
}

fn pools() -> PoolsConfig {
    PoolsConfig::parse(VM_POOLS).expect("vm pools")
}

fn pool(name: &str) -> Pool {
    pools().pool(name).map(|p| (**p).clone()).expect("pool")
}

fn settings(arm: &str) -> Settings {
    Settings::from_lookup(|k| match k {
        "GITHUB_WEBHOOK_SECRET" => Some("whsec".into()),
        "AZURE_SUBSCRIPTION_ID" => Some("00000000-0000-0000-0000-000000000001".into()),
        "AZURE_RESOURCE_MANAGER_URL" => Some(arm.into()),
        _ => None,
    })
    .expect("settings")
}

fn backend(arm: &str) -> VmBackend {
    let s = settings(arm);
    VmBackend::new(&s, &AzureCredential::from_settings(&s.azure).expect("managed identity"))
}

fn jit_request(pool: &Pool, job_id: u64) -> ComputeRequest {
    ComputeRequest {
        name: pool.runner_name(job_id),
        purpose: Purpose::Job(JobInfo {
            job_id,
            run_id: 9001,
            repository: "octo-org/api".into(),
            job_created_at: Some("2026-11-23T15:00:00Z".into()),
        }),
        runner_id: Some(4242),
        env: vec![
            ("RUNNER_JITCONFIG".into(), EnvValue::Secret(Secret::new(JIT_SECRET))),
            ("CUSTOM".into(), EnvValue::Plain("plain-value".into())),
        ],
    }
}

fn puts(fake: &FakeArmVms) -> Vec<ArmCall> {
    fake.lock().calls.iter().filter(|c| c.method == "PUT").cloned().collect()
}

fn refuse(fake: &FakeArmVms, group: &str, spot_only: bool, status: u16, code: &str, message: &str) {
    let refusal = PutRefusal { spot_only, status, code: code.into(), message: message.into() };
    fake.lock().refusals.insert(group.into(), refusal);
}

vm_test!(
    /// One PUT, create-only, with the managed identity's token, makes the VM with its NIC and
    /// OS disk; find and list see it; when the runner powers the VM off it reads as finished;
    /// one DELETE leaves nothing behind, and a second is a no-op.
    vm_create_find_list_and_one_delete_that_leaves_nothing,
    async {
        let (arm, fake) = start_arm().await;
        let b = backend(&arm);
        let p = pool("docker");
        assert_eq!(b.create(&p, &jit_request(&p, 42)).await, Ok(CreateOutcome::Created));
        let put = puts(&fake).pop().expect("one PUT");
        assert_eq!(fake.lock().body_problems, Vec::<String>::new());
        assert!(put.path.ends_with("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-runners/providers/Microsoft.Compute/virtualMachines/ghr-42"), "{}", put.path);
        assert_eq!(put.if_none_match.as_deref(), Some("*"), "create-only");
        let (resource, ok) = token_requests().await.pop().expect("a token request");
        assert!(ok, "identity header and api-version");
        assert_eq!(put.bearer, token_for(&resource));

        let found = b.find(&p, "ghr-42").await.expect("find").expect("exists");
        assert_eq!((found.state.clone(), found.job_id, found.runner_id), (ComputeState::Running, Some(42), Some(4242)));
        assert_eq!(found.repository.as_deref(), Some("octo-org/api"));
        assert!(found.created_at.is_some());
        assert_eq!(found.run_id, Some(9001));
        assert_eq!(b.list(&p).await.expect("list").len(), 1);
        fake.set_power("ghr-42", "stopped");
        let found = b.find(&p, "ghr-42").await.expect("find").expect("exists");
        assert_eq!(found.state, ComputeState::Succeeded, "the boot script powered it off: the job is over");
        assert_eq!(fake.lock().attached.len(), 2, "a NIC and an OS disk came with the VM");

        b.delete(&p, "ghr-42").await.expect("delete");
        {
            let state = fake.lock();
            assert!(state.vms.is_empty());
            assert_eq!(state.attached.len(), 0, "the NIC and OS disk went with the VM: {:?}", state.attached);
        }
        assert_eq!(b.find(&p, "ghr-42").await, Ok(None));
        b.delete(&p, "ghr-42").await.expect("deleting a missing VM is success");
    }
);

vm_test!(
    /// `max_runners` counts every VM of the pool, finished ones too (a stopped VM is billed
    /// until deleted), from one list call that our own creates and deletes keep current.
    vm_active_count_is_one_list_kept_current_by_our_creates_and_deletes,
    async {
        let (arm, fake) = start_arm().await;
        let b = backend(&arm).with_active_count_ttl(std::time::Duration::from_secs(3600));
        let p = pool("docker");
        let lists = |fake: &FakeArmVms| {
            fake.lock().calls.iter().filter(|c| c.method == "GET" && c.path.ends_with("/virtualMachines")).count()
        };
        assert_eq!(b.active_count(&p).await, Ok(Some(0)));
        b.create(&p, &jit_request(&p, 1)).await.expect("created");
        b.create(&p, &jit_request(&p, 2)).await.expect("created");
        fake.set_power("ghr-1", "stopped");
        assert_eq!(b.active_count(&p).await, Ok(Some(2)));
        b.delete(&p, "ghr-1").await.expect("deleted");
        assert_eq!(b.active_count(&p).await, Ok(Some(1)));
        assert_eq!(lists(&fake), 1, "one list call, then our own creates and deletes");
        let fresh = backend(&arm);
        assert_eq!(fresh.active_count(&p).await, Ok(Some(1)), "a fresh count agrees");
    }
);

vm_test!(
    /// Delete-with-VM on the NIC and the OS disk, no public IP anywhere, Spot with a delete
    /// eviction policy, and the body Microsoft's model accepts.
    vm_body_deletes_nic_and_disk_with_the_vm_and_has_no_public_ip,
    async {
        let (arm, fake) = start_arm().await;
        let p = pool("docker");
        backend(&arm).create(&p, &jit_request(&p, 7)).await.expect("created");
        let body = puts(&fake).pop().expect("PUT").body;
        let props = &body["properties"];
        let nic = &props["networkProfile"]["networkInterfaceConfigurations"][0]["properties"];
        assert_eq!(nic["deleteOption"], "Delete");
        assert_eq!(props["storageProfile"]["osDisk"]["deleteOption"], "Delete");
        assert_eq!(props["storageProfile"]["osDisk"]["diffDiskSettings"]["option"], "Local", "os_disk = ephemeral");
        assert_eq!(props["networkProfile"]["networkApiVersion"], vm::NETWORK_API_VERSION);
        assert_eq!(
            nic["ipConfigurations"][0]["properties"]["subnet"]["id"],
            "/subscriptions/s/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/v/subnets/vm-runners"
        );
        assert!(!body.to_string().contains("publicIPAddress"), "no public IP: {body}");
        assert_eq!((props["priority"].as_str(), props["evictionPolicy"].as_str()), (Some("Spot"), Some("Delete")));
        assert_eq!(props["osProfile"]["linuxConfiguration"]["disablePasswordAuthentication"], true);
        assert!(props["osProfile"].get("adminPassword").is_none());
        assert_eq!(schema_errors(&body), Vec::<String>::new());
    }
);

vm_test!(
    /// Spot refused for capacity: the same attempt creates the same VM at regular priority,
    /// in the same placement, and succeeds.
    vm_spot_refused_at_create_falls_back_to_regular_in_the_same_attempt,
    async {
        let (arm, fake) = start_arm().await;
        refuse(&fake, "rg-runners", true, 409, "SkuNotAvailable", "The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: Standard_D4ads_v5' is currently not available in location 'westeurope'.");
        let p = pool("docker");
        assert_eq!(backend(&arm).create(&p, &jit_request(&p, 8)).await, Ok(CreateOutcome::Created));
        let bodies: Vec<Value> = puts(&fake).into_iter().map(|c| c.body).collect();
        assert_eq!(bodies.len(), 2);
        assert_eq!(bodies[0]["properties"]["priority"], "Spot");
        assert!(bodies[1]["properties"].get("priority").is_none(), "regular priority: {}", bodies[1]);
        assert!(bodies[1]["properties"].get("billingProfile").is_none());
        let vm = fake.lock().vms.values().next().cloned().expect("one VM");
        assert!(vm["properties"].get("priority").is_none());
        // A refusal that is not about capacity is not retried at regular priority.
        refuse(&fake, "rg-runners", true, 400, "InvalidParameter", "bad");
        let e = backend(&arm).create(&p, &jit_request(&p, 9)).await.expect_err("refused");
        assert!(!e.is_retryable(), "{e}");
        assert_eq!(puts(&fake).len(), 3);
    }
);

vm_test!(
    /// The JIT configuration reaches ARM only in `customData`: not in tags, userData or any
    /// other field of the body (in clear or base64), and no GET or list answer (with any
    /// `$expand`) carries it.
    vm_jit_config_is_absent_from_every_readable_field,
    async {
        let (arm, fake) = start_arm().await;
        let b = backend(&arm);
        let p = pool("docker-spread");
        b.create(&p, &jit_request(&p, 5)).await.expect("created");
        let mut body = puts(&fake).pop().expect("PUT").body;
        let custom = body["properties"]["osProfile"]["customData"].as_str().expect("customData").to_owned();
        let script = String::from_utf8(BASE64.decode(&custom).expect("base64")).expect("utf8");
        let env_b64 = script.lines().find_map(|l| l.strip_prefix("echo '")).and_then(|l| l.split('\'').next()).expect("env line");
        let env = String::from_utf8(BASE64.decode(env_b64).expect("base64")).expect("utf8");
        assert!(env.contains(&format!("RUNNER_JITCONFIG='{JIT_SECRET}'")), "{env}");
        let forms = [JIT_SECRET.to_owned(), BASE64.encode(JIT_SECRET), env_b64.to_owned(), custom.clone()];
        body["properties"]["osProfile"].as_object_mut().expect("osProfile").remove("customData");
        let rest = body.to_string();
        for f in &forms {
            assert!(!rest.contains(f.as_str()), "a form of the JIT config outside customData: {rest}");
        }
        assert!(body["properties"].get("userData").is_none());
        let vm_url = format!(
            "{arm}/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-a/providers/Microsoft.Compute/virtualMachines/spread-5?api-version={}",
            vm::COMPUTE_API_VERSION
        );
        let list_url = format!(
            "{arm}/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-a/providers/Microsoft.Compute/virtualMachines?api-version={}",
            vm::COMPUTE_API_VERSION
        );
        let client = runner_dispatch::tls::client_builder().build().expect("client");
        let bearer = fake.lock().calls[0].bearer.clone();
        for url in [
            vm_url.clone(),
            format!("{vm_url}&$expand=instanceView"),
            format!("{vm_url}&$expand=userData"),
            list_url.clone(),
            format!("{list_url}&$expand=instanceView"),
        ] {
            let text = client.get(&url).bearer_auth(&bearer).send().await.expect("GET").text().await.expect("text");
            assert!(text.contains("spread-5"), "{url}: {text}");
            for f in &forms {
                assert!(!text.contains(f.as_str()), "{url} returned a form of the JIT config");
            }
        }
        let listed = b.list(&p).await.expect("list");
        assert!(!format!("{listed:?}").contains(JIT_SECRET));
    }
);

vm_test!(
    /// A vCPU-family quota refusal pauses that placement and the same attempt creates in the
    /// next; the next job skips the paused placement without a call; all placements paused is
    /// a retryable wait, and the provisioner's gate then defers before any call.
    vm_quota_refusal_fails_over_across_placements,
    async {
        let (arm, fake) = start_arm().await;
        refuse(&fake, "rg-a", false, 409, "OperationNotAllowed", "Operation could not be completed as it results in exceeding approved standardDADSv5Family Cores quota. Additional details - Deployment Model: Resource Manager, Location: westeurope, Current Limit: 10, Current Usage: 10, Additional Required: 2, (Minimum) New Limit Required: 12.");
        let b = backend(&arm);
        let p = pool("docker-spread");
        assert_eq!(b.create(&p, &jit_request(&p, 1)).await, Ok(CreateOutcome::Created));
        let groups = |fake: &FakeArmVms| -> Vec<String> {
            puts(fake).iter().map(|c| c.path.split("/resourceGroups/").nth(1).unwrap().split('/').next().unwrap().to_owned()).collect()
        };
        assert_eq!(groups(&fake), ["rg-a", "rg-b"]);
        let vm = fake.lock().vms.values().next().cloned().expect("VM");
        assert_eq!(vm["location"], "northeurope");
        assert_eq!(vm["tags"]["runner-dispatch-placement"], "northeurope");
        assert_eq!(
            vm["properties"]["networkProfile"]["networkInterfaceConfigurations"][0]["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"],
            "/subscriptions/s/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/ne/subnets/vm",
            "each placement's own subnet"
        );
        b.create(&p, &jit_request(&p, 2)).await.expect("created");
        assert_eq!(groups(&fake), ["rg-a", "rg-b", "rg-b"], "rg-a is paused: no call");
        assert!(b.find(&p, "spread-1").await.expect("find").is_some(), "find looks in every placement");
        assert_eq!(b.list(&p).await.expect("list").len(), 2);

        refuse(&fake, "rg-b", false, 409, "ZonalAllocationFailed", "Allocation failed. We do not have sufficient capacity for the requested VM size in this zone.");
        let e = b.create(&p, &jit_request(&p, 3)).await.expect_err("all paused");
        assert!(matches!(e, ProvisionError::Retryable { retry_after: Some(_), .. }), "{e:?}");
        assert!(b.paused_for(&p).is_some(), "every placement paused: the provisioner defers before any call");
        assert_eq!(fake.lock().body_problems, Vec::<String>::new());
    }
);

vm_test!(
    /// Concurrent deliveries for the same job: both PUT create-only, ARM takes one, the other
    /// reads as already made; one VM exists.
    vm_name_is_the_lock_under_concurrent_deliveries,
    async {
        let (arm, fake) = start_arm().await;
        let b = backend(&arm);
        let p = pool("docker");
        let r = jit_request(&p, 77);
        let (x, y) = tokio::join!(b.create(&p, &r), b.create(&p, &r));
        let mut outcomes = [x.expect("first"), y.expect("second")];
        outcomes.sort_by_key(|o| *o == CreateOutcome::Created);
        assert_eq!(outcomes, [CreateOutcome::AlreadyExists, CreateOutcome::Created]);
        assert_eq!(fake.lock().vms.len(), 1);
        assert!(puts(&fake).iter().all(|c| c.if_none_match.as_deref() == Some("*")));
    }
);

vm_test!(
    /// `doctor`: every placement says whether the identity may create VMs, join the subnet,
    /// assign the jobs' identity and read the gallery image, naming what is missing.
    vm_doctor_names_the_missing_rights_and_the_unreadable_image,
    async {
        let (arm, fake) = start_arm().await;
        let b = backend(&arm);
        let p = pool("docker-spread");
        let Compute::Vm(v) = &p.compute else { panic!("vm pool") };
        let vm::VmImage::Gallery(image) = &v.image else { panic!("gallery image") };
        fake.lock().images.insert(image.to_ascii_lowercase());
        let reached = b.reach(&p).await;
        assert_eq!(reached.len(), 2);
        assert!(reached.iter().all(|(_, r)| r == &Ok(0)), "{reached:?}");

        let we = "/subscriptions/s/resourcegroups/net/providers/microsoft.network/virtualnetworks/we/subnets/vm";
        fake.lock().permissions.insert(we.into(), vec!["Microsoft.Network/*/read".into()]);
        fake.lock().permissions.insert("/subscriptions/00000000-0000-0000-0000-000000000001/resourcegroups/rg-b".into(), vec!["*/read".into()]);
        fake.lock().images.clear();
        let reached = b.reach(&p).await;
        let e0 = reached[0].1.clone().expect_err("no subnet join in westeurope").to_string();
        assert!(e0.contains(SUBNET_JOIN) && e0.contains("cannot find gallery image"), "{e0}");
        let e1 = reached[1].1.clone().expect_err("no write in rg-b").to_string();
        assert!(e1.contains("Microsoft.Compute/virtualMachines/write") && !e1.contains(SUBNET_JOIN), "{e1}");
    }
);

vm_test!(
    /// The lifecycle through the provisioner and reconcile: a queued job gets a VM (with the
    /// JIT config of its registration); when the runner powers the VM off, reconcile deletes
    /// it; a VM whose runner never came online is reaped as a failed start and its job
    /// requeued.
    vm_lifecycle_through_the_provisioner_and_reconcile,
    async {
        let (arm, fake) = start_arm().await;
        let pools = Arc::new(pools());
        let gh = Arc::new(FakeGitHub::default());
        let b: Arc<dyn ComputeBackend> = Arc::new(backend(&arm));
        let provisioner = Arc::new(Provisioner::new(pools, gh.clone(), Backends::single(b)));
        let labels = ["self-hosted", "linux", "docker"];
        let msg = runner_dispatch::message::RunnerMessage { runner_name: "ghr-11".into(), ..provision_message(11, "docker", &labels) };
        let outcome = provisioner.provision(&msg, 1).await.expect("provisioned");
        assert!(matches!(outcome, ProvisionOutcome::Created { backend: "vm" }), "{outcome:?}");
        assert!(fake.lock().vms.keys().any(|k| k.ends_with("/ghr-11")));
        let msg = runner_dispatch::message::RunnerMessage { runner_name: "ghr-12".into(), ..provision_message(12, "docker", &labels) };
        provisioner.provision(&msg, 1).await.expect("provisioned");

        // ghr-11's runner ran its job and powered the VM off; ghr-12's never came online.
        fake.set_power("ghr-11", "stopped");
        let old = (time::OffsetDateTime::now_utc() - time::Duration::minutes(30))
            .format(&time::format_description::well_known::Rfc3339)
            .expect("fmt");
        for vm in fake.lock().vms.values_mut().filter(|v| v["name"] == "ghr-12") {
            vm["properties"]["timeCreated"] = json!(old);
        }
        for r in gh.runners.lock().expect("runners").iter_mut() {
            r.online = false;
        }
        gh.jobs.lock().expect("jobs").insert(12, Ok(runner_dispatch::github::JobState::Queued));
        let report = Reconciler::new(provisioner, false).run().await;
        assert_eq!((report.finished, report.failed_starts), (1, 1), "{report:?}");
        assert!(fake.lock().vms.is_empty(), "both VMs deleted");
        assert!(fake.lock().attached.is_empty(), "with their NICs and disks");
        assert_eq!(report.requeue.iter().map(|m| m.job_id).collect::<Vec<_>>(), [12]);
    }
);

vm_test!(
    /// Idle runners work through the trait: reconcile holds the pool's idle target with VMs
    /// named `<prefix>-i-<8 hex>`, tagged with their registration target, and `status`
    /// counts them.
    vm_idle_runners_are_vms_that_reconcile_keeps_ready,
    async {
        let (arm, fake) = start_arm().await;
        let text = VM_POOLS.replacen("spot = true\n", "spot = true\nidle_runners = 2\n", 1);
        let pools = Arc::new(PoolsConfig::parse(&text).expect("pools"));
        let gh = Arc::new(FakeGitHub::default());
        let b: Arc<dyn ComputeBackend> = Arc::new(backend(&arm));
        let reconciler = Reconciler::new(Arc::new(Provisioner::new(pools, gh, Backends::single(b))), false);
        let report = reconciler.run().await;
        assert_eq!(report.idle_created, 2, "{report:?}");
        let vms: Vec<Value> = fake.lock().vms.values().cloned().collect();
        assert_eq!(vms.len(), 2);
        for vm in &vms {
            let name = vm["name"].as_str().expect("name");
            assert!(name.starts_with("ghr-i-") && name.len() == "ghr-i-".len() + 8, "{name}");
            assert_eq!(vm["tags"]["runner-dispatch-idle-target"], "octo-org");
            assert_eq!(vm["tags"]["runner-dispatch-pool"], "docker");
        }
        assert_eq!(fake.lock().body_problems, Vec::<String>::new());
        let status = reconciler.status().await;
        let docker = status.iter().find(|s| s.pool == "docker").expect("docker pool");
        assert_eq!(docker.backend, "vm");
        assert_eq!(docker.runners.booting + docker.runners.idle, 2, "{:?}", docker.runners);
    }
);

#[test]
fn vm_dry_run_bodies_are_schema_valid_and_show_no_secret() {
    for p in pools().pools.iter() {
        let Compute::Vm(v) = &p.compute else { continue };
        let r = jit_request(p, 3);
        let body = vm::dry_run_body(p, v, &r);
        assert_eq!(schema_errors(&body), Vec::<String>::new(), "{}", p.name);
        let script = String::from_utf8(
            BASE64.decode(body["properties"]["osProfile"]["customData"].as_str().expect("customData")).expect("b64"),
        )
        .expect("utf8");
        let env_b64 =
            script.lines().find_map(|l| l.strip_prefix("echo '")).and_then(|l| l.split('\'').next()).expect("env");
        let env = String::from_utf8(BASE64.decode(env_b64).expect("b64")).expect("utf8");
        assert!(env.contains("RUNNER_JITCONFIG='[redacted]'") && env.contains("CUSTOM='plain-value'"), "{env}");
        assert!(!body.to_string().contains(JIT_SECRET));
    }
}

#[test]
fn vm_pool_problems_are_one_error_each_naming_the_key() {
    let text = r#"
[github]
allowed_owners = ["o"]
[[pools]]
name = "v"
backend = "vm"
os = "windows"
labels = ["docker"]
image = "myacr.azurecr.io/runner:1"
os_disk = "tmpfs"
os_disk_gb = 0
env = { "NOT A NAME" = "x" }
placements = [{ location = "westeurope" }, { location = "northeurope", subnet_id = "/subscriptions/s/x" }]
[[pools]]
name = "a"
backend = "aci"
labels = ["aci"]
image = "img"
spot = true
"#;
    let err = PoolsConfig::parse(text).expect_err("refused");
    let keys: Vec<&str> = err.0.iter().filter(|p| !p.warning).map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "pools[0].os_disk",
            "pools[0].vm_size",
            "pools[0].os_disk_gb",
            "pools[0].image",
            "pools[0].os",
            "pools[0].placements[0].subnet_id",
            "pools[0].env.\"NOT A NAME\"",
            "pools[1].spot",
        ]
    );
}

#[test]
fn a_placement_problem_checked_by_aci_and_vm_is_reported_once() {
    // ACI and VM pools share the placement keys, and both backends check them on every
    // pool: one problem, one error.
    let text = r#"
[github]
allowed_owners = ["o"]
[[pools]]
name = "v"
backend = "vm"
labels = ["docker"]
image = "Canonical:ubuntu-24_04-lts:server:latest"
vm_size = "Standard_D2ads_v5"
placements = []
"#;
    let err = PoolsConfig::parse(text).expect_err("refused");
    let keys: Vec<&str> = err.0.iter().filter(|p| !p.warning).map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["pools[0].placements", "pools[0].subnet_id"]);
}
