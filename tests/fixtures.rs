//! Every GitHub payload fixture parses into the domain event, with runner_* as sent and as null.

use std::path::Path;

use runner_dispatch::webhook::parse_workflow_job;

fn webhook_fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github-webhooks");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("fixtures dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("workflow_job__") && n.ends_with(".payload.json"))
        })
        .map(|p| (p.file_name().expect("name").to_string_lossy().into_owned(), std::fs::read(&p).expect("read")))
        .collect();
    out.sort();
    out
}

/// octokit's queued, in_progress and completed examples have `full_name`
/// `Codertocat/Hello-World` under owner `Octocoders`: GitHub never sends that (the owner part
/// of `full_name` is the owner's login), and runner-dispatch refuses it, since a path built
/// from one and an allowlist checked on the other is how a name escaped its URL segment.
const INCONSISTENT_OWNER: &str = "workflow_job__completed.success.with-organization.payload.json";

/// The fixtures as GitHub sends them: `full_name`'s owner part made the owner's login
/// where octokit's example disagrees.
fn consistent(_name: &str, body: Vec<u8>) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let login = v["repository"]["owner"]["login"].as_str().expect("login").to_owned();
    let repo = v["repository"]["name"].as_str().expect("name").to_owned();
    v["repository"]["full_name"] = format!("{login}/{repo}").into();
    serde_json::to_vec(&v).expect("ser")
}

#[test]
fn a_fixture_whose_full_name_names_another_owner_is_refused() {
    let (_, body) = webhook_fixtures().into_iter().find(|(n, _)| n == INCONSISTENT_OWNER).expect("fixture");
    let err = parse_workflow_job(&body).expect_err("full_name of another owner");
    assert!(err.to_string().contains("another owner"), "{err}");
}

#[test]
fn every_workflow_job_fixture_parses_with_its_action_labels_and_repository() {
    let fixtures = webhook_fixtures();
    assert_eq!(fixtures.len(), 4, "queued, waiting, in_progress, completed");
    for (name, body) in fixtures {
        let body = consistent(&name, body);
        let raw: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let e = parse_workflow_job(&body).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(e.action, raw["action"].as_str().expect("action"), "{name}");
        assert_eq!(e.job_id, raw["workflow_job"]["id"].as_u64().expect("id"), "{name}");
        assert_eq!(e.repository, raw["repository"]["full_name"].as_str().expect("full_name"), "{name}");
        assert_eq!(e.owner, raw["repository"]["owner"]["login"].as_str().expect("login"), "{name}");
        let labels: Vec<String> = raw["workflow_job"]["labels"]
            .as_array()
            .expect("labels")
            .iter()
            .map(|l| l.as_str().expect("s").to_owned())
            .collect();
        assert_eq!(e.labels, labels, "{name}");
        assert_eq!(e.installation_id, raw["installation"]["id"].as_u64(), "{name}");
    }
}

#[test]
fn every_workflow_job_fixture_parses_with_runner_fields_null_and_unknown_fields_added() {
    for (name, body) in webhook_fixtures() {
        let mut v: serde_json::Value = serde_json::from_slice(&consistent(&name, body)).expect("json");
        for k in [
            "runner_id",
            "runner_name",
            "runner_group_id",
            "runner_group_name",
            "conclusion",
            "completed_at",
            "started_at",
            "workflow_name",
            "head_branch",
        ] {
            v["workflow_job"][k] = serde_json::Value::Null;
        }
        v["workflow_job"]["a_field_github_adds_later"] = serde_json::json!({"nested": [1, 2]});
        v["brand_new_top_level"] = serde_json::json!(true);
        let e = parse_workflow_job(&serde_json::to_vec(&v).expect("ser")).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(e.runner_name, None, "{name}");
        assert_eq!(e.runner_id, None, "{name}");
    }
}

#[test]
fn the_ping_fixtures_are_not_workflow_jobs() {
    for f in ["ping__payload.json", "ping__with-app_id.payload.json"] {
        let body = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github-webhooks").join(f))
            .expect("read");
        assert!(parse_workflow_job(&body).is_err(), "{f}");
    }
}
