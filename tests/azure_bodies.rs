//! The pure body builders (used by the backends, the demo and dry-run) against
//! Microsoft's models: every pool shape gives a body Azure accepts.

use serde_json::{Value, json};

use runner_dispatch::azure::aci::{AciPool, container_group_body};
use runner_dispatch::azure::batch::{batch_job_body, batch_task_body};
use runner_dispatch::azure::vm::vm_body;
use runner_dispatch::config::Compute;
use runner_dispatch::testing::azure::{SUBNET, Schema, batch_part, jit_request, pool, pools, registration_request};

#[test]
fn every_body_builder_output_is_schema_valid() {
    let cfg = pools();
    for p in &cfg.pools {
        for req in [jit_request(p, 123), registration_request(p, 456)] {
            // Every pool's shape (OS, image, identities) as an ACI body too: a Batch
            // pool's with ACI's default sizes.
            let default_aci = AciPool {
                cpu: 2.0,
                memory_gb: 4.0,
                subnet_id: None,
                resource_group: None,
                location: None,
                placements: vec![],
            };
            let aci_part = if let Compute::Aci(a) = &p.compute { a } else { &default_aci };
            let aci = container_group_body(p, aci_part, &req, "westeurope");
            assert_eq!(Schema::ContainerGroup.errors(&aci), Vec::<String>::new(), "ACI body of {}", p.name);
            if let Compute::Vm(v) = &p.compute {
                let vm = vm_body(p, v, &req, "westeurope", SUBNET);
                assert_eq!(Schema::VirtualMachine.errors(&vm), Vec::<String>::new(), "VM body of {}", p.name);
            }
            if let Compute::Batch(b) = &p.compute {
                let task = batch_task_body(p, b, &req);
                assert_eq!(Schema::BatchTask.errors(&task), Vec::<String>::new(), "task of {}", p.name);
                let job = batch_job_body(b);
                assert_eq!(Schema::BatchJob.errors(&job), Vec::<String>::new(), "job of {}", p.name);
            }
        }
    }
    // The schemas are strict: an unknown field is refused.
    let mut bad =
        batch_task_body(&pool("linux-batch"), batch_part(&pool("linux-batch")), &jit_request(&pool("linux-batch"), 1));
    bad["metadata"] = json!([]);
    assert!(!Schema::BatchTask.errors(&bad).is_empty());
}

#[test]
fn the_azure_examples_validate_against_the_schemas() {
    let read = |p: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(format!("{}/tests/fixtures/{p}", env!("CARGO_MANIFEST_DIR"))).unwrap(),
        )
        .unwrap()
    };
    let task = read("azure-batch/Tasks_CreateTask_ContainerSettings.2025-06-01.21.0.json");
    assert_eq!(Schema::BatchTask.errors(&task["parameters"]["task"]), Vec::<String>::new());
    let job = read("azure-batch/JobAdd_Basic.2022-01-01.15.0.json");
    assert_eq!(Schema::BatchJob.errors(&job["parameters"]["job"]), Vec::<String>::new());
}
