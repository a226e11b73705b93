//! The VM backend (a fresh Azure VM per job) against the ARM fake of
//! `runner_dispatch::testing::azure` (the one the ACI tests use), through the real
//! `azure_identity` managed identity path (`azure_test!`: each test body runs in a child
//! process). Every VM body the backend sends is checked against Microsoft's model
//! (`compute-virtual-machine.schema.json`); the fake refuses a body that fails, as Azure
//! would. Scenarios every backend meets are in tests/compute_contract.rs; these are the
//! VM-specific ones.

use std::sync::Arc;

use axum::http::Method;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use runner_dispatch::azure::vm::{self, SUBNET_JOIN};
use runner_dispatch::azure_test;
use runner_dispatch::backends::Backends;
use runner_dispatch::compute::{ComputeBackend, ComputeState, CreateOutcome, ProvisionError};
use runner_dispatch::config::{Compute, PoolsConfig};
use runner_dispatch::provision::{ProvisionOutcome, Provisioner};
use runner_dispatch::reconcile::Reconciler;
use runner_dispatch::testing::azure::arm::{Arm, ArmFake, boot_env_value, vm_boot_env};
use runner_dispatch::testing::azure::core::Service;
use runner_dispatch::testing::azure::identity::{token_for, token_hits};
use runner_dispatch::testing::azure::{
    JIT_SECRET, POOLS, SUBSCRIPTION, Schema, Seen, jit_request, pool, pools, start_arm, vm_part,
};
use runner_dispatch::testing::{FakeGitHub, provision_message};

/// The VM pools of the Azure test pools, so reconcile passes see only them.
fn vm_pools(text: &str) -> PoolsConfig {
    let mut cfg = PoolsConfig::parse(text).expect("pools");
    cfg.pools.retain(|p| matches!(p.compute, Compute::Vm(_)));
    cfg
}

fn backend(arm: &str) -> vm::VmBackend {
    runner_dispatch::testing::azure::vm(arm, &[])
}

/// The ARM fake and the VM backend over it.
async fn start() -> (ArmFake, vm::VmBackend) {
    let fake = start_arm().await;
    let backend = backend(&fake.url);
    (fake, backend)
}

fn puts(fake: &ArmFake) -> Vec<Seen> {
    fake.seen().into_iter().filter(|c| c.method == Method::PUT).collect()
}

fn header<'a>(req: &'a Seen, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Every PUT so far carried a body Microsoft's model accepts.
fn every_body_passed(fake: &ArmFake) {
    let puts = puts(fake).len();
    assert_eq!(fake.lock().bodies_checked, puts, "a body the VM model refuses");
}

/// Every VM create in resource group `rg` gets ARM's error `code` until `accept`.
fn refuse(fake: &ArmFake, rg: &str, status: u16, code: &str, message: &str) {
    fake.refuse(Method::PUT, &format!("/resourceGroups/{rg}/"), Arm::error(status, code, message));
}

azure_test!(
    /// One PUT, create-only, with the managed identity's token, makes the VM with its NIC and
    /// OS disk; find and list see it; when the runner powers the VM off it reads as finished;
    /// one DELETE leaves nothing behind, and a second is a no-op.
    vm_create_find_list_and_one_delete_that_leaves_nothing,
    async {
        let fake = start_arm().await;
        let b = backend(&fake.url);
        let p = pool("docker");
        assert_eq!(b.create(&p, &jit_request(&p, 42)).await, Ok(CreateOutcome::Created));
        let put = puts(&fake).pop().expect("one PUT");
        every_body_passed(&fake);
        assert!(put.path.ends_with(&format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-runners/providers/Microsoft.Compute/virtualMachines/ghr-42")), "{}", put.path);
        assert_eq!(header(&put, "if-none-match"), Some("*"), "create-only");
        let hit = token_hits().await.pop().expect("a token request");
        assert!(hit.identity_header_ok && hit.api_version == "2019-08-01", "identity header and api-version: {hit:?}");
        assert_eq!(header(&put, "authorization"), Some(format!("Bearer {}", token_for(&hit.resource)).as_str()));

        let found = b.find(&p, "ghr-42").await.expect("find").expect("exists");
        assert_eq!((found.state.clone(), found.job_id, found.runner_id), (ComputeState::Running, Some(42), Some(4242)));
        assert_eq!(found.repository.as_deref(), Some("octo-org/api"));
        assert!(found.created_at.is_some());
        assert_eq!(found.run_id, Some(9001));
        assert_eq!(b.list(&p).await.expect("list").len(), 1);
        fake.lock().set_power("ghr-42", "stopped");
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

azure_test!(
    /// `max_runners` counts every VM of the pool, finished ones too (a stopped VM is billed
    /// until deleted), from one list call that our own creates and deletes keep current.
    vm_active_count_is_one_list_kept_current_by_our_creates_and_deletes,
    async {
        let fake = start_arm().await;
        let arm = fake.url.clone();
        let b = backend(&arm).with_active_count_ttl(std::time::Duration::from_secs(3600));
        let p = pool("docker");
        let lists = |fake: &ArmFake| {
            fake.seen().iter().filter(|c| c.method == Method::GET && c.path.ends_with("/virtualMachines")).count()
        };
        assert_eq!(b.active_count(&p).await, Ok(Some(0)));
        b.create(&p, &jit_request(&p, 1)).await.expect("created");
        b.create(&p, &jit_request(&p, 2)).await.expect("created");
        fake.lock().set_power("ghr-1", "stopped");
        assert_eq!(b.active_count(&p).await, Ok(Some(2)));
        b.delete(&p, "ghr-1").await.expect("deleted");
        assert_eq!(b.active_count(&p).await, Ok(Some(1)));
        assert_eq!(lists(&fake), 1, "one list call, then our own creates and deletes");
        let fresh = backend(&arm);
        assert_eq!(fresh.active_count(&p).await, Ok(Some(1)), "a fresh count agrees");
    }
);

azure_test!(
    /// The fake refuses, as ARM would, a VM body Microsoft's model refuses (here a field the
    /// model does not know), and creates nothing: the other tests' passing bodies mean
    /// something.
    vm_a_body_the_model_refuses_is_answered_400_and_creates_nothing,
    async {
        let fake = start_arm().await;
        let p = pool("docker");
        let mut body = vm::dry_run_body(&p, vm_part(&p), &jit_request(&p, 6));
        body["properties"]["unknownField"] = json!(true);
        let url = format!(
            "{}/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-runners/providers/Microsoft.Compute/virtualMachines/ghr-6?api-version={}",
            fake.url,
            vm::COMPUTE_API_VERSION
        );
        let client = runner_dispatch::tls::client_builder().build().expect("client");
        let answer = client.put(&url).bearer_auth(token_for(&fake.url)).json(&body).send().await.expect("PUT");
        assert_eq!(answer.status(), 400);
        let error: Value = answer.json().await.expect("json");
        assert_eq!(error["error"]["code"], "InvalidRequestContent", "{error}");
        assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains("unknownField")), "{error}");
        assert!(fake.lock().vms.is_empty());
        assert_eq!(fake.lock().bodies_checked, 0);
    }
);

azure_test!(
    /// Delete-with-VM on the NIC and the OS disk, no public IP anywhere, Spot with a delete
    /// eviction policy, and the body Microsoft's model accepts.
    vm_body_deletes_nic_and_disk_with_the_vm_and_has_no_public_ip,
    async {
        let fake = start_arm().await;
        let arm = fake.url.clone();
        let p = pool("docker");
        backend(&arm).create(&p, &jit_request(&p, 7)).await.expect("created");
        let body = puts(&fake).pop().expect("PUT").body.expect("a body");
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
        assert_eq!(Schema::VirtualMachine.errors(&body), Vec::<String>::new());
    }
);

azure_test!(
    /// Spot refused for capacity: the same attempt creates the same VM at regular priority,
    /// in the same placement, and succeeds.
    vm_spot_refused_at_create_falls_back_to_regular_in_the_same_attempt,
    async {
        let fake = start_arm().await;
        let arm = fake.url.clone();
        // Spot refused, regular capacity there: the next create is refused, the one after not.
        fake.answer_next(Arm::error(409, "SkuNotAvailable", "The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: Standard_D4ads_v5' is currently not available in location 'westeurope'."));
        let p = pool("docker");
        assert_eq!(backend(&arm).create(&p, &jit_request(&p, 8)).await, Ok(CreateOutcome::Created));
        let bodies: Vec<Value> = puts(&fake).into_iter().map(|c| c.body.expect("a body")).collect();
        assert_eq!(bodies.len(), 2);
        assert_eq!(bodies[0]["properties"]["priority"], "Spot");
        assert!(bodies[1]["properties"].get("priority").is_none(), "regular priority: {}", bodies[1]);
        assert!(bodies[1]["properties"].get("billingProfile").is_none());
        let vm = fake.lock().vms.values().next().cloned().expect("one VM");
        assert!(vm["properties"].get("priority").is_none());
        // A refusal that is not about capacity is not retried at regular priority.
        fake.answer_next(Arm::error(400, "InvalidParameter", "bad"));
        let e = backend(&arm).create(&p, &jit_request(&p, 9)).await.expect_err("refused");
        assert!(!e.is_retryable(), "{e}");
        assert_eq!(puts(&fake).len(), 3);
    }
);

azure_test!(
    /// The JIT configuration reaches ARM only in `customData`: not in tags, userData or any
    /// other field of the body (in clear or base64), and no GET or list answer (with any
    /// `$expand`) carries it.
    vm_jit_config_is_absent_from_every_readable_field,
    async {
        let (fake, b) = start().await;
        let arm = fake.url.clone();
        let p = pool("docker-spread");
        b.create(&p, &jit_request(&p, 5)).await.expect("created");
        let mut body = puts(&fake).pop().expect("PUT").body.expect("a body");
        let custom = body["properties"]["osProfile"]["customData"].as_str().expect("customData").to_owned();
        let env = vm_boot_env(&body).expect("the boot script's variables");
        assert_eq!(boot_env_value(&env, "RUNNER_JITCONFIG").as_deref(), Some(JIT_SECRET), "{env}");
        let forms = [JIT_SECRET.to_owned(), BASE64.encode(JIT_SECRET), BASE64.encode(&env), custom.clone()];
        body["properties"]["osProfile"].as_object_mut().expect("osProfile").remove("customData");
        let rest = body.to_string();
        for f in &forms {
            assert!(!rest.contains(f.as_str()), "a form of the JIT config outside customData: {rest}");
        }
        assert!(body["properties"].get("userData").is_none());
        let vm_url = format!(
            "{arm}/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-a/providers/Microsoft.Compute/virtualMachines/spread-5?api-version={}",
            vm::COMPUTE_API_VERSION
        );
        let list_url = format!(
            "{arm}/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-a/providers/Microsoft.Compute/virtualMachines?api-version={}",
            vm::COMPUTE_API_VERSION
        );
        let client = runner_dispatch::tls::client_builder().build().expect("client");
        let bearer = header(&fake.seen()[0], "authorization").and_then(|a| a.strip_prefix("Bearer ")).expect("bearer").to_owned();
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

azure_test!(
    /// A vCPU-family quota refusal pauses that placement and the same attempt creates in the
    /// next; the next job skips the paused placement without a call; all placements paused is
    /// a retryable wait, and the provisioner's gate then defers before any call.
    vm_quota_refusal_fails_over_across_placements,
    async {
        let fake = start_arm().await;
        let arm = fake.url.clone();
        refuse(&fake, "rg-a", 409, "OperationNotAllowed", "Operation could not be completed as it results in exceeding approved standardDADSv5Family Cores quota. Additional details - Deployment Model: Resource Manager, Location: westeurope, Current Limit: 10, Current Usage: 10, Additional Required: 2, (Minimum) New Limit Required: 12.");
        let b = backend(&arm);
        let p = pool("docker-spread");
        assert_eq!(b.create(&p, &jit_request(&p, 1)).await, Ok(CreateOutcome::Created));
        let groups = |fake: &ArmFake| -> Vec<String> {
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

        refuse(&fake, "rg-b", 409, "ZonalAllocationFailed", "Allocation failed. We do not have sufficient capacity for the requested VM size in this zone.");
        let e = b.create(&p, &jit_request(&p, 3)).await.expect_err("all paused");
        assert!(matches!(e, ProvisionError::Retryable { retry_after: Some(_), .. }), "{e:?}");
        assert!(b.paused_for(&p).is_some(), "every placement paused: the provisioner defers before any call");
        every_body_passed(&fake);
    }
);

azure_test!(
    /// Concurrent deliveries for the same job: both PUT create-only, ARM takes one, the other
    /// reads as already made; one VM exists.
    vm_name_is_the_lock_under_concurrent_deliveries,
    async {
        let (fake, b) = start().await;
        let p = pool("docker");
        let r = jit_request(&p, 77);
        let (x, y) = tokio::join!(b.create(&p, &r), b.create(&p, &r));
        let mut outcomes = [x.expect("first"), y.expect("second")];
        outcomes.sort_by_key(|o| *o == CreateOutcome::Created);
        assert_eq!(outcomes, [CreateOutcome::AlreadyExists, CreateOutcome::Created]);
        assert_eq!(fake.lock().vms.len(), 1);
        assert!(puts(&fake).iter().all(|c| header(c, "if-none-match") == Some("*")));
    }
);

azure_test!(
    /// `doctor`: every placement says whether the identity may create VMs, join the subnet,
    /// assign the jobs' identity and read the gallery image, naming what is missing.
    vm_doctor_names_the_missing_rights_and_the_unreadable_image,
    async {
        let (fake, b) = start().await;
        let p = pool("docker-spread");
        let vm::VmImage::Gallery(image) = &vm_part(&p).image else { panic!("gallery image") };
        fake.lock().images.insert(image.to_ascii_lowercase());
        let reached = b.reach(&p).await;
        assert_eq!(reached.len(), 2);
        assert!(reached.iter().all(|(_, r)| r == &Ok(0)), "{reached:?}");

        let we = "/subscriptions/s/resourcegroups/net/providers/microsoft.network/virtualnetworks/we/subnets/vm";
        fake.lock().permissions.insert(we.into(), vec!["Microsoft.Network/*/read".into()]);
        fake.lock().permissions.insert(format!("/subscriptions/{SUBSCRIPTION}/resourcegroups/rg-b"), vec!["*/read".into()]);
        fake.lock().images.clear();
        let reached = b.reach(&p).await;
        let e0 = reached[0].1.clone().expect_err("no subnet join in westeurope").to_string();
        assert!(e0.contains(SUBNET_JOIN) && e0.contains("cannot find gallery image"), "{e0}");
        let e1 = reached[1].1.clone().expect_err("no write in rg-b").to_string();
        assert!(e1.contains("Microsoft.Compute/virtualMachines/write") && !e1.contains(SUBNET_JOIN), "{e1}");
    }
);

azure_test!(
    /// The lifecycle through the provisioner and reconcile: a queued job gets a VM (with the
    /// JIT config of its registration); when the runner powers the VM off, reconcile deletes
    /// it; a VM whose runner never came online is reaped as a failed start and its job
    /// requeued.
    vm_lifecycle_through_the_provisioner_and_reconcile,
    async {
        let fake = start_arm().await;
        let arm = fake.url.clone();
        let pools = Arc::new(vm_pools(POOLS));
        let gh = Arc::new(FakeGitHub::default());
        let b: Arc<dyn ComputeBackend> = Arc::new(backend(&arm));
        let provisioner = Arc::new(Provisioner::new(pools, gh.clone(), Backends::single(b)));
        let labels = ["self-hosted", "linux", "docker"];
        let msg = runner_dispatch::message::RunnerMessage { runner_name: "ghr-11".into(), ..provision_message(11, "docker", &labels) };
        let outcome = provisioner.provision(&msg, 1).await.expect("provisioned");
        assert!(matches!(outcome, ProvisionOutcome::Created { backend: "vm" }), "{outcome:?}");
        assert!(fake.lock().vms.keys().any(|(_, _, name)| name == "ghr-11"));
        let msg = runner_dispatch::message::RunnerMessage { runner_name: "ghr-12".into(), ..provision_message(12, "docker", &labels) };
        provisioner.provision(&msg, 1).await.expect("provisioned");

        // ghr-11's runner ran its job and powered the VM off; ghr-12's never came online.
        fake.lock().set_power("ghr-11", "stopped");
        let old = (time::OffsetDateTime::now_utc() - time::Duration::minutes(30))
            .format(&time::format_description::well_known::Rfc3339)
            .expect("fmt");
        fake.lock().vm_mut("ghr-12").expect("ghr-12")["properties"]["timeCreated"] = json!(old);
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

azure_test!(
    /// Idle runners work through the trait: reconcile holds the pool's idle target with VMs
    /// named `<prefix>-i-<8 hex>`, tagged with their registration target, and `status`
    /// counts them.
    vm_idle_runners_are_vms_that_reconcile_keeps_ready,
    async {
        let fake = start_arm().await;
        let arm = fake.url.clone();
        let text = POOLS.replacen("spot = true\n", "spot = true\nidle_runners = 2\nrunner_group_id = 9\n", 1);
        let pools = Arc::new(vm_pools(&text));
        assert_ne!(text, POOLS, "pool docker keeps 2 idle runners");
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
        every_body_passed(&fake);
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
        assert_eq!(Schema::VirtualMachine.errors(&body), Vec::<String>::new(), "{}", p.name);
        let env = vm_boot_env(&body).expect("the boot script's variables");
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
