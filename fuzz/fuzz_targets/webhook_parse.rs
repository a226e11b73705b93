//! `parse_workflow_job` and `webhook::accept` with a fixed pools config. The first byte
//! chooses headers (signed or not, event, content type, which config); the rest is the body,
//! so the GitHub fixtures behind one prefix byte make a good seed corpus (see README.md).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use runner_dispatch::config::PoolsConfig;
use runner_dispatch::secret::Secret;
use runner_dispatch::testing::{POOLS, SECRET};
use runner_dispatch::webhook::{Headers, accept, parse_workflow_job, sign};

const STRICT: &str = r#"
[github]
allowed_owners = ["Octocoders"]
allowed_repositories = ["Octocoders/Hello-*", "octocoders/h?llo-world", "octocoders/*/x"]
allow_public_repositories = false
allowed_installation_ids = [1, 42]
check_job_queued = "never"

[[pools]]
name = "api"
backend = "aci"
labels = ["self-hosted", "linux"]
image = "example.azurecr.io/runner:1"
repositories = ["octocoders/*"]
"#;

static CONFIGS: LazyLock<[PoolsConfig; 2]> = LazyLock::new(|| {
    [PoolsConfig::parse(POOLS).expect("pools parse"), PoolsConfig::parse(STRICT).expect("strict parses")]
});

const EVENTS: [Option<&str>; 4] = [Some("workflow_job"), Some("ping"), None, Some("push")];
const CONTENT_TYPES: [Option<&str>; 4] =
    [Some("application/json"), None, Some("application/x-www-form-urlencoded"), Some("Application/JSON; charset=utf-8")];

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else { return };
    let _ = parse_workflow_job(body);

    let signed = flags & 1 == 1;
    let pools = &CONFIGS[usize::from(flags >> 5 & 1)];
    let mut headers = vec![("X-GitHub-Delivery".to_owned(), "fuzz".to_owned())];
    if let Some(e) = EVENTS[usize::from(flags >> 1 & 3)] {
        headers.push(("X-GitHub-Event".into(), e.into()));
    }
    if let Some(ct) = CONTENT_TYPES[usize::from(flags >> 3 & 3)] {
        headers.push(("Content-Type".into(), ct.into()));
    }
    if signed {
        headers.push(("X-Hub-Signature-256".into(), sign(SECRET.as_bytes(), body)));
    } else if flags & 0x40 != 0 {
        headers.push(("X-Hub-Signature-256".into(), sign(b"wrong secret", body)));
    }
    let outcome = accept(&[Secret::from(SECRET)], pools, &Headers::new(headers), body);
    assert!(outcome.status() < 500, "5xx from accept: {outcome:?}");
    let queued = outcome.message().is_some();
    if queued {
        assert!(signed, "unsigned delivery queued work");
        assert_eq!(outcome.status(), 202);
        let job = parse_workflow_job(body).expect("queued work from an unparseable body");
        assert!(runner_dispatch::webhook::check_allowed(pools, &job).is_ok());
        // Names from the payload stay within GitHub's rules, and the message stays small:
        // no path step, query or fragment can reach a URL, and labels are capped.
        if let Some(m) = outcome.message() {
            runner_dispatch::names::check_full_name(&m.repository, &m.owner)
                .expect("queued a message whose names break GitHub's rules");
            assert!(m.labels.len() <= runner_dispatch::names::MAX_LABELS, "{} labels queued", m.labels.len());
            let bytes: usize = m.labels.iter().map(String::len).sum();
            assert!(bytes <= runner_dispatch::names::MAX_LABELS_TOTAL_BYTES, "{bytes} label bytes queued");
            assert!(!m.delivery_id.contains(['\n', '\r', '\u{1b}']), "a control character in the delivery id");
        }
    }
});
