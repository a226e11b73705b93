//! Names that arrive in payloads and messages (owners, repositories, labels) are untrusted
//! even when signed: they are checked here before they reach a URL, a log line, a queue
//! message or a resource name.

/// Longest owner login accepted. GitHub caps logins at 39 characters; Enterprise Managed
/// Users add an `_<shortcode>` suffix, so allow some room.
pub const MAX_OWNER_CHARS: usize = 64;

/// Longest repository name GitHub allows.
pub const MAX_REPOSITORY_CHARS: usize = 100;

/// Most distinct labels a job may carry (GitHub's JIT API takes 1 to 100).
pub const MAX_LABELS: usize = 100;

/// Longest single label accepted, in bytes.
pub const MAX_LABEL_BYTES: usize = 128;

/// Most label bytes in all: with the other fields a queue message stays under 6 KiB, far
/// below Storage's 64 KiB (after base64) limit.
pub const MAX_LABELS_TOTAL_BYTES: usize = 4096;

/// An owner login: ASCII letters, digits, `-` and `_` (EMU logins), not starting with `-`.
///
/// # Errors
/// Why not, naming the value's problem (not the value).
pub fn check_owner(login: &str) -> Result<(), String> {
    if login.is_empty() || login.len() > MAX_OWNER_CHARS {
        return Err(format!("owner login must be 1 to {MAX_OWNER_CHARS} characters"));
    }
    if login.starts_with('-') || !login.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err("owner login may hold only ASCII letters, digits, '-' and '_'".into());
    }
    Ok(())
}

/// A repository name (without its owner): ASCII letters, digits, `.`, `-` and `_`, at most
/// 100 characters, and neither `.` nor `..` (which a URL would resolve as a path step).
///
/// # Errors
/// Why not.
pub fn check_repository_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_REPOSITORY_CHARS {
        return Err(format!("repository name must be 1 to {MAX_REPOSITORY_CHARS} characters"));
    }
    if name == "." || name == ".." {
        return Err("repository name may not be '.' or '..'".into());
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')) {
        return Err("repository name may hold only ASCII letters, digits, '.', '-' and '_'".into());
    }
    Ok(())
}

/// `owner/name` whose owner part is `owner` (ASCII-case-insensitively): returns the name.
///
/// # Errors
/// Not of that shape, another owner, or a part outside GitHub's rules.
pub fn check_full_name<'a>(full_name: &'a str, owner: &str) -> Result<&'a str, String> {
    check_owner(owner)?;
    let Some((full_owner, name)) = full_name.split_once('/') else {
        return Err("repository full_name must be owner/name".into());
    };
    if !full_owner.eq_ignore_ascii_case(owner) {
        return Err("repository full_name names another owner than repository.owner.login".into());
    }
    check_repository_name(name).map_err(|e| format!("repository full_name: {e}"))?;
    Ok(name)
}

/// Labels deduplicated ASCII-case-insensitively (the first spelling kept, as GitHub
/// compares them), then capped in count and size.
///
/// # Errors
/// Too many distinct labels, one too long, or too many bytes in all.
pub fn dedup_labels(labels: Vec<String>) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    let mut total = 0usize;
    for label in labels {
        if out.iter().any(|l| l.eq_ignore_ascii_case(&label)) {
            continue;
        }
        if label.len() > MAX_LABEL_BYTES {
            return Err(format!("a label is longer than {MAX_LABEL_BYTES} bytes"));
        }
        total += label.len();
        if total > MAX_LABELS_TOTAL_BYTES {
            return Err(format!("labels hold more than {MAX_LABELS_TOTAL_BYTES} bytes in all"));
        }
        if out.len() == MAX_LABELS {
            return Err(format!("more than {MAX_LABELS} distinct labels"));
        }
        out.push(label);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_follow_githubs_rules() {
        for ok in ["octo-org", "Octo-Org", "a", "user_emu", "x1-2"] {
            assert!(check_owner(ok).is_ok(), "{ok}");
        }
        for bad in ["", "..", ".", "-x", "o/x", "o?x", "o#x", "o%2F", "o x", "o\nx", &"a".repeat(65)] {
            assert!(check_owner(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn repository_names_follow_githubs_rules() {
        for ok in ["x", ".github", "a..b_c-d", "..x", &"r".repeat(100)] {
            assert!(check_repository_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "x/y", "x?y", "x#y", "x%2F", "x y", "x\\y", &"r".repeat(101)] {
            assert!(check_repository_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn full_name_must_belong_to_the_owner() {
        assert_eq!(check_full_name("Octo-Org/x", "octo-org"), Ok("x"));
        assert!(check_full_name("octo-org/x/../../../orgs/other-org", "octo-org").is_err());
        assert!(check_full_name("other-org/x", "octo-org").is_err());
        assert!(check_full_name("octo-org", "octo-org").is_err());
    }

    #[test]
    fn labels_are_deduplicated_by_ascii_case_and_capped() {
        let many = vec!["linux".to_owned(); 10_000];
        assert_eq!(dedup_labels(many).unwrap(), ["linux"]);
        let mixed = vec!["Linux".into(), "LINUX".into(), "x64".into(), "doc\u{212A}er".into(), "docker".into()];
        assert_eq!(dedup_labels(mixed).unwrap(), ["Linux", "x64", "doc\u{212A}er", "docker"]);
        assert!(dedup_labels((0..101).map(|i| format!("l{i}")).collect()).is_err());
        assert!(dedup_labels(vec!["x".repeat(129)]).is_err());
        assert!(dedup_labels((0..33).map(|i| format!("{i:0>125}")).collect()).is_err());
        assert!(dedup_labels((0..100).map(|i| format!("l{i}")).collect()).is_ok());
    }
}
