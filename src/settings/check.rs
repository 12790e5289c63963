//! Value checks: a syntax rule's answer turned into a [`SettingsError`] that names the
//! key, and lists checked for their length, each entry and repeats.

use super::errors::SettingsError;
use std::collections::BTreeSet;

/// A syntax rule: `Err` says what is allowed (`agent_mount_common::syntax`).
pub type Rule = fn(&str) -> Result<(), String>;

/// Checks a value with a syntax rule.
pub fn check(key: &str, value: &str, rule: Rule) -> Result<(), SettingsError> {
    rule(value).map_err(|allowed| SettingsError::invalid(key, value, allowed))
}

/// Checks a list's length, each entry, and that no entry repeats, in n·log n.
pub fn check_list(
    key: &'static str,
    list: &[String],
    max: usize,
    rule: Rule,
) -> Result<(), SettingsError> {
    if list.len() > max {
        return Err(SettingsError::TooMany {
            key,
            count: list.len(),
            max,
        });
    }
    let mut seen = BTreeSet::new();
    for (i, entry) in list.iter().enumerate() {
        check(&format!("{key}[{i}]"), entry, rule)?;
        if !seen.insert(entry.as_str()) {
            return Err(SettingsError::Duplicate {
                key: format!("{key}[{i}]"),
                value: entry.clone(),
            });
        }
    }
    Ok(())
}
