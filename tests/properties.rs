//! Properties of the security-relevant pure functions, checked on random inputs
//! (256 cases each, so the suite stays fast; `PROPTEST_CASES` raises it).

use std::sync::LazyLock;

use proptest::prelude::*;
use runner_dispatch::config::PoolsConfig;
use runner_dispatch::functions_host::{parse_http_invocation, parse_queue_invocation};
use runner_dispatch::glob::Glob;
use runner_dispatch::message::{MessageKind, RunnerMessage, decode_message};
use runner_dispatch::secret::Secret;
use runner_dispatch::webhook::{Headers, accept, sign, verify_signature};

const SECRET: &str = "property-secret";

static POOLS: LazyLock<PoolsConfig> = LazyLock::new(|| {
    PoolsConfig::parse(
        r#"
[github]
allowed_owners = ["Octocoders", "o"]
allow_public_repositories = true
check_job_queued = "never"

[[pools]]
name = "linux"
backend = "aci"
labels = ["self-hosted", "linux", "x64", "ubuntu-latest"]
image = "example.azurecr.io/runner:1"
"#,
    )
    .expect("pools parse")
});

fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
}

/// A `workflow_job` body that would be accepted when signed, with random ids and labels.
fn job_body() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            Just("queued".to_owned()),
            Just("completed".to_owned()),
            Just("in_progress".to_owned()),
            "[a-z_]{0,12}"
        ],
        any::<u64>(),
        prop::collection::vec(prop_oneof![Just("linux".to_owned()), Just("ubuntu-latest".to_owned()), ".{0,8}"], 0..4),
        prop_oneof![Just("o".to_owned()), Just("Octocoders".to_owned()), ".{0,10}"],
        any::<bool>(),
    )
        .prop_map(|(action, id, labels, owner, private)| {
            serde_json::to_vec(&serde_json::json!({
                "action": action,
                "workflow_job": {"id": id, "run_id": 1, "labels": labels,
                                 "created_at": "2099-01-01T00:00:00Z"},
                "repository": {"full_name": format!("{owner}/r"), "owner": {"login": owner}, "private": private},
                "installation": {"id": 1},
            }))
            .expect("ser")
        })
}

/// Arbitrary bytes, plausible JSON, or a real-looking job.
fn any_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::collection::vec(any::<u8>(), 0..512), ".{0,256}".prop_map(String::into_bytes), job_body(),]
}

fn header_value() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![".{0,80}", "sha256=[0-9a-fA-F]{0,70}", "[ -~]{0,40}"])
}

fn headers_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
    (
        prop::option::of(prop_oneof![Just("workflow_job".to_owned()), Just("ping".to_owned()), ".{0,12}"]),
        prop::option::of(prop_oneof![Just("application/json".to_owned()), ".{0,30}"]),
        header_value(),
        prop::collection::vec(("[A-Za-z-]{1,20}", ".{0,20}"), 0..4),
    )
        .prop_map(|(event, ct, sig, extra)| {
            let mut h = extra;
            if let Some(e) = event {
                h.push(("X-GitHub-Event".into(), e));
            }
            if let Some(c) = ct {
                h.push(("Content-Type".into(), c));
            }
            if let Some(s) = sig {
                h.push(("X-Hub-Signature-256".into(), s));
            }
            h
        })
}

fn flip(mut v: Vec<u8>, index: usize, xor: u8) -> Vec<u8> {
    let i = index % v.len();
    v[i] ^= xor;
    v
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn sign_then_verify_succeeds(body in prop::collection::vec(any::<u8>(), 0..256), secret in ".{0,40}",
                                 others in prop::collection::vec(".{0,10}", 0..3)) {
        let mut secrets: Vec<Secret> = others.iter().map(|s| Secret::from(s.as_str())).collect();
        secrets.push(Secret::from(secret.as_str()));
        let header = sign(secret.as_bytes(), &body);
        prop_assert_eq!(verify_signature(&secrets, Some(&header), &body), Ok(()));
    }

    #[test]
    fn any_single_byte_change_of_the_body_fails(body in prop::collection::vec(any::<u8>(), 1..256), secret in ".{0,40}",
                                                index in any::<usize>(), xor in 1u8..=255) {
        let header = sign(secret.as_bytes(), &body);
        let tampered = flip(body, index, xor);
        prop_assert!(verify_signature(&[Secret::from(secret.as_str())], Some(&header), &tampered).is_err());
    }

    #[test]
    fn any_single_byte_change_of_the_signature_fails(body in prop::collection::vec(any::<u8>(), 0..256), secret in ".{0,40}",
                                                     index in any::<usize>(), xor in 1u8..=127) {
        let header = sign(secret.as_bytes(), &body).into_bytes();
        let tampered = flip(header, index, xor);
        // A flipped case of a hex letter is the same signature (hex is case-insensitive); skip it.
        prop_assume!(!tampered.eq_ignore_ascii_case(sign(secret.as_bytes(), &body).as_bytes()));
        let tampered = String::from_utf8_lossy(&tampered).into_owned();
        prop_assert!(verify_signature(&[Secret::from(secret.as_str())], Some(&tampered), &body).is_err());
    }

    #[test]
    fn accept_never_panics_nor_answers_5xx(headers in headers_strategy(), body in any_body()) {
        let out = accept(&[Secret::from(SECRET)], &POOLS, &Headers::new(headers), &body);
        prop_assert!(out.status() < 500, "{:?}", out);
        prop_assert!(out.body()["result"].is_string() && out.body()["detail"].is_string());
    }

    #[test]
    fn accepted_work_only_comes_from_signed_deliveries(headers in headers_strategy(), body in any_body(), sign_it in any::<bool>()) {
        let mut headers = headers;
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case("x-hub-signature-256"));
        let good = sign(SECRET.as_bytes(), &body);
        if sign_it {
            headers.push(("X-Hub-Signature-256".into(), good.clone()));
        }
        let out = accept(&[Secret::from(SECRET)], &POOLS, &Headers::new(headers.clone()), &body);
        if !sign_it {
            prop_assert!(out.message().is_none(), "unsigned request queued work");
            prop_assert!(out.status() == 401 || out.status() == 413 || out.status() == 415, "{:?}", out);
        }
        // Signed with another secret: never work either.
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case("x-hub-signature-256"));
        headers.push(("X-Hub-Signature-256".into(), sign(b"another secret", &body)));
        let out = accept(&[Secret::from(SECRET)], &POOLS, &Headers::new(headers), &body);
        prop_assert!(out.message().is_none(), "badly signed request queued work");
    }

    #[test]
    fn signed_real_looking_jobs_are_decided_without_5xx(body in job_body()) {
        let headers = vec![
            ("X-GitHub-Event".to_owned(), "workflow_job".to_owned()),
            ("X-Hub-Signature-256".to_owned(), sign(SECRET.as_bytes(), &body)),
        ];
        let out = accept(&[Secret::from(SECRET)], &POOLS, &Headers::new(headers), &body);
        prop_assert!(out.status() < 500);
        prop_assert_eq!(out.message().is_some(), out.status() == 202);
    }

    #[test]
    fn envelope_parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), text in ".{0,256}",
                                    nested in arb_json()) {
        for input in [bytes.clone(), text.clone().into_bytes(), nested.to_string().into_bytes(),
                      serde_json::json!({"Data": {"req": nested.clone(), "message": nested.clone()}, "Metadata": nested.clone()}).to_string().into_bytes()] {
            let _ = parse_http_invocation(&input);
            if let Ok(q) = parse_queue_invocation(&input) {
                prop_assert!(q.dequeue_count >= 1);
                let _ = decode_message(&q.message);
            }
        }
        let _ = decode_message(&nested);
        let _ = decode_message(&serde_json::Value::String(text));
    }

    #[test]
    fn decode_message_undoes_0_to_3_encodings(m in arb_message(), times in 0usize..=3, as_string_first in any::<bool>()) {
        let mut v = if as_string_first {
            serde_json::Value::String(serde_json::to_string(&m).expect("ser"))
        } else {
            serde_json::to_value(&m).expect("ser")
        };
        for _ in 0..times {
            v = serde_json::Value::String(v.to_string());
        }
        prop_assert_eq!(decode_message(&v).expect("decodes"), m);
    }

    #[test]
    fn pools_parsing_never_panics_and_every_error_names_a_key(text in arb_pools_text()) {
        match PoolsConfig::parse(&text) {
            Ok(c) => prop_assert!(!c.pools.is_empty()),
            Err(e) => {
                prop_assert!(!e.0.is_empty());
                for p in &e.0 {
                    prop_assert!(!p.key.trim().is_empty(), "problem without a key: {:?}", p);
                    prop_assert!(!p.message.trim().is_empty(), "problem without a message: {:?}", p);
                }
            }
        }
    }

    #[test]
    fn glob_agrees_with_a_reference_matcher(pattern in "[ab*?/]{0,10}", text in "[abAB/]{0,12}") {
        prop_assert_eq!(Glob::new(&pattern).matches(&text), reference_glob(pattern.as_bytes(), text.to_ascii_lowercase().as_bytes()),
            "pattern {:?} text {:?}", pattern, text);
    }

    #[test]
    fn glob_agrees_with_the_reference_on_wider_alphabets(pattern in "[a-cA-C*?./-]{0,12}", text in "[a-cA-C./-]{0,16}") {
        let lower_pattern = pattern.to_ascii_lowercase();
        prop_assert_eq!(Glob::new(&pattern).matches(&text), reference_glob(lower_pattern.as_bytes(), text.to_ascii_lowercase().as_bytes()));
    }
}

#[test]
fn a_star_in_a_repository_glob_never_crosses_a_slash() {
    let g = Glob::new("octo-org/*");
    assert!(g.matches("octo-org/x"));
    assert!(g.matches("Octo-Org/.github"));
    assert!(!g.matches("octo-org/x/../../../orgs/other-org"));
    assert!(!g.matches("octo-org/x/y"));
    assert!(!Glob::new("*").matches("octo-org/x"));
    assert!(!Glob::new("octo-*").matches("octo-org/x"));
    assert!(!Glob::new("octo-org/x?y").matches("octo-org/x/y"));
    assert!(Glob::new("*/*").matches("a/b"));
    assert!(!Glob::new("*/*").matches("a/b/c"));
}

/// Found by the `pools_file` fuzz target: a table with an empty key gave a problem with no key.
#[test]
fn an_empty_or_quoted_key_is_still_named() {
    for text in ["[\"\" ]\n", "\"\" = 1\n", "[github]\n\"\" = 1\n\"a.b\" = 2\n"] {
        let e = PoolsConfig::parse(text).expect_err("invalid");
        for p in &e.0 {
            assert!(!p.key.trim().is_empty(), "{text:?}: {p:?}");
        }
    }
    let e = PoolsConfig::parse("[github]\n\"a.b\" = 2\n").expect_err("invalid");
    assert!(e.0.iter().any(|p| p.key == "github.\"a.b\""), "{e}");
}

/// The obvious recursive matcher: `*` any run (also empty), `?` one byte, neither of them
/// a `/` (a glob's `*` stays inside its owner or repository part).
fn reference_glob(p: &[u8], t: &[u8]) -> bool {
    match (p.first(), t.first()) {
        (None, None) => true,
        (None, Some(_)) => false,
        (Some(b'*'), _) => {
            reference_glob(&p[1..], t) || (t.first().is_some_and(|&c| c != b'/') && reference_glob(p, &t[1..]))
        }
        (Some(_), None) => false,
        (Some(b'?'), Some(&c)) => c != b'/' && reference_glob(&p[1..], &t[1..]),
        (Some(c), Some(d)) => c == d && reference_glob(&p[1..], &t[1..]),
    }
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        ".{0,20}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("Data".to_owned()),
                    Just("req".to_owned()),
                    Just("Body".to_owned()),
                    Just("Headers".to_owned()),
                    Just("DequeueCount".to_owned()),
                    Just("v".to_owned()),
                    ".{0,6}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_message() -> impl Strategy<Value = RunnerMessage> {
    (
        (any::<bool>(), any::<u64>(), any::<u64>(), ".{0,20}", ".{0,10}", prop::option::of(any::<u64>())),
        (prop::collection::vec(".{0,8}", 0..4), ".{0,10}", ".{0,12}", ".{0,36}"),
        (
            prop::option::of(".{0,25}"),
            prop::option::of(".{0,10}"),
            prop::option::of(".{0,25}"),
            prop::option::of(".{0,10}"),
        ),
    )
        .prop_map(
            |(
                (cleanup, job_id, run_id, repository, owner, installation_id),
                (labels, pool, runner_name, delivery_id),
                (created, ran_on, started, origin),
            )| RunnerMessage {
                v: 1,
                kind: if cleanup { MessageKind::Cleanup } else { MessageKind::Provision },
                job_id,
                run_id,
                repository,
                owner,
                installation_id,
                labels,
                pool,
                runner_name,
                delivery_id,
                job_created_at: created,
                ran_on_id: ran_on.as_ref().map(|r| r.len() as u64),
                ran_on,
                job_started_at: started,
                origin,
            },
        )
}

/// Arbitrary text, and TOML built from the real keys with random values.
fn arb_pools_text() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("name"),
        Just("backend"),
        Just("os"),
        Just("labels"),
        Just("image"),
        Just("cpu"),
        Just("memory_gb"),
        Just("max_runners"),
        Just("repositories"),
        Just("tags"),
        Just("env"),
        Just("enabled"),
        Just("batch_pool_id"),
        Just("runner_ttl"),
        Just("runner_group_id"),
        Just("name_prefix"),
        Just("identity"),
        Just("allow_readable_tokens"),
        Just("unknown_key"),
    ];
    let value = prop_oneof![
        Just("\"aci\"".to_owned()),
        Just("\"batch\"".to_owned()),
        Just("\"windows\"".to_owned()),
        Just("[\"linux\"]".to_owned()),
        Just("[]".to_owned()),
        Just("true".to_owned()),
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("1.5".to_owned()),
        Just("\"10m\"".to_owned()),
        Just("{ a = \"b\" }".to_owned()),
        Just("[1, \"x\"]".to_owned()),
        Just("1979-05-27".to_owned()),
        "\"[ -~&&[^\"\\\\]]{0,12}\"".prop_map(|s| s),
    ];
    let github = prop_oneof![
        Just("allowed_owners = [\"o\"]\n".to_owned()),
        Just("allowed_owners = []\n".to_owned()),
        Just("allowed_owners = [\"o\"]\ntoken_mode = \"registration\"\nrunner_scope = \"repo\"\n".to_owned()),
        Just("allowed_owners = \"o\"\nallowed_installation_ids = [-1]\n".to_owned()),
        Just(String::new()),
    ];
    let pool = prop::collection::vec((key, value), 0..8)
        .prop_map(|kv| kv.into_iter().map(|(k, v)| format!("{k} = {v}\n")).collect::<String>());
    prop_oneof![
        ".{0,200}",
        (github, prop::collection::vec(pool, 0..3), any::<bool>()).prop_map(|(g, pools, defaults)| {
            let mut s = format!("[github]\n{g}");
            if defaults {
                s.push_str("[defaults]\ncpu = 1\n");
            }
            for p in pools {
                s.push_str("[[pools]]\n");
                s.push_str(&p);
            }
            s
        }),
    ]
}
