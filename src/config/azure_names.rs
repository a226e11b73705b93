//! Azure names that go into ARM URLs: a subscription id and a resource group name are path
//! segments of every ACI call, so they are checked against Azure's own rules before any
//! URL is built (`rg/../../..` once reached another ARM path).

/// Longest resource group name Azure accepts.
pub const MAX_RESOURCE_GROUP_CHARS: usize = 90;

/// A subscription id: a GUID, `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in hex digits.
///
/// # Errors
/// Why it is not one, in words.
pub fn check_subscription_id(id: &str) -> Result<(), String> {
    let groups: Vec<&str> = id.split('-').collect();
    let shaped = groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
    if shaped {
        Ok(())
    } else {
        Err(format!("{id:?} is not a subscription id (a GUID such as 00000000-0000-0000-0000-000000000000)"))
    }
}

/// A resource group name as Azure allows it: 1 to 90 letters, digits, `_`, `-`, `.`, `(`
/// and `)`, not ending with `.`.
///
/// # Errors
/// Why it is not one, in words.
pub fn check_resource_group(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '(' | ')');
    let len = name.chars().count();
    if len == 0 || len > MAX_RESOURCE_GROUP_CHARS || !name.chars().all(allowed) || name.ends_with('.') {
        return Err(format!(
            "{name:?} is not a resource group name: 1 to {MAX_RESOURCE_GROUP_CHARS} letters, digits, _, -, ., ( and ), not ending with ."
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_ids_are_guids() {
        assert!(check_subscription_id("00000000-0000-0000-0000-000000000000").is_ok());
        assert!(check_subscription_id("6A1B2c3d-0000-4000-8000-00000000abcd").is_ok());
        for bad in [
            "",
            "x",
            "sub",
            "00000000-0000-0000-0000-00000000000",
            "00000000-0000-0000-0000-000000000000/..",
            "0000000g-0000-0000-0000-000000000000",
            "00000000000000000000000000000000",
        ] {
            assert!(check_subscription_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn resource_groups_use_azures_character_set() {
        for good in ["rg", "rg-runners", "My_RG.(prod)", "r", "rëgion", &"a".repeat(90)] {
            assert!(check_resource_group(good).is_ok(), "{good:?}");
        }
        for bad in ["", "rg/../../..", "rg/x", "rg.", "rg x", "rg%2F", "rg?x", &"a".repeat(91)] {
            assert!(check_resource_group(bad).is_err(), "{bad:?}");
        }
    }
}
