//! The custom container-group role of infra/modules/aci-rbac.bicep, checked against the
//! ARM calls src/azure/aci.rs makes: every call needs its action in the role, and every
//! action in the role is needed by a call. A new call without its action (a 403 at run
//! time, found only on Azure) or an action no call uses (rights for nothing: the
//! `stop/action`, `operationResults/read` and `containers/logs/read` the role once held,
//! logs/read exposing runner output) fails here.

use std::collections::BTreeSet;
use std::path::Path;

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The quoted strings of the first `actions: [ ... ]` list (not notActions or dataActions).
fn role_actions(bicep: &str) -> BTreeSet<String> {
    let start = bicep.lines().position(|l| l.trim() == "actions: [").expect("aci-rbac.bicep has an `actions: [` list");
    bicep
        .lines()
        .skip(start + 1)
        .take_while(|l| l.trim() != "]")
        .map(|l| l.trim().trim_matches('\'').to_owned())
        .filter(|a| !a.is_empty())
        .collect()
}

/// The ARM actions the container-group client needs: one per HTTP method it sends through
/// the shared ARM client (`self.arm.client.<method>(`, and `self.arm.get_json(` /
/// `self.arm.list_all(`, which GET), all on the container-group URLs of `groups_url`.
fn called_actions(source: &str) -> BTreeSet<String> {
    let resource = "Microsoft.ContainerInstance/containerGroups";
    assert!(source.contains(&format!("/providers/{resource}\"")), "aci.rs builds its URLs under /providers/{resource}");
    let mut out = BTreeSet::new();
    let reads = ["self.arm.get_json(", "self.arm.list_all("];
    if reads.iter().any(|r| source.contains(r)) {
        out.insert(format!("{resource}/read"));
    }
    for (at, _) in source.match_indices("self.arm.client.") {
        let method: String =
            source[at + "self.arm.client.".len()..].chars().take_while(char::is_ascii_alphabetic).collect();
        let action = match method.as_str() {
            "get" => "read",
            "put" | "patch" => "write",
            "delete" => "delete",
            other => panic!(
                "aci.rs sends a {other} request: name its ARM action (for example containerGroups/stop/action) here and in aci-rbac.bicep"
            ),
        };
        out.insert(format!("{resource}/{action}"));
    }
    assert!(!out.is_empty(), "no ARM call found in aci.rs: has the client moved?");
    out
}

#[test]
fn the_container_group_role_grants_exactly_what_the_aci_client_calls() {
    let granted = role_actions(&read("infra/modules/aci-rbac.bicep"));
    let needed = called_actions(&read("src/azure/aci.rs"));
    let missing: Vec<_> = needed.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&needed).collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "aci-rbac.bicep: missing {missing:?}, not used by aci.rs {unused:?}"
    );
}

#[test]
fn the_role_reader_and_the_call_reader_see_what_they_should() {
    let bicep = "actions: [\n  'A/read'\n  'A/write'\n]\nnotActions: []\ndataActions: [\n  'B'\n]\n";
    assert_eq!(role_actions(bicep), BTreeSet::from(["A/read".to_owned(), "A/write".to_owned()]));
    let source = "\"{}/providers/Microsoft.ContainerInstance/containerGroups\" self.arm.get_json(&w, &u) self.arm.client.delete(&u)";
    assert_eq!(
        called_actions(source),
        BTreeSet::from([
            "Microsoft.ContainerInstance/containerGroups/delete".to_owned(),
            "Microsoft.ContainerInstance/containerGroups/read".to_owned(),
        ])
    );
}
