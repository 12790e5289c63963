//! Settings errors: one variant per kind of problem, each message naming the key, the bad
//! value and what is allowed.

/// A settings problem; the message names the key, the bad value and what is allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The settings are not a mapping.
    #[error(
        "settings: expected a mapping of keys such as {{\"mountMethod\": \"k8s-host-path\"}}, got {0}"
    )]
    NotAMapping(String),
    /// A key has the wrong type or is unknown (serde's words, with the key path).
    #[error("{key}: {message}")]
    Malformed {
        /// The key path.
        key: String,
        /// What serde found wrong.
        message: String,
    },
    /// A key set for a method it does not apply to.
    #[error(
        "{key}: not allowed with mountMethod {method:?}: it applies only to {applies_to}{hint}"
    )]
    NotForMethod {
        /// The key.
        key: String,
        /// The chosen method.
        method: &'static str,
        /// The methods the key applies to.
        applies_to: String,
        /// Where the setting belongs instead, if anywhere.
        hint: &'static str,
    },
    /// A key the chosen method needs is missing.
    #[error("{key}: required with mountMethod {method:?}: {example}")]
    Required {
        /// The key.
        key: &'static str,
        /// The chosen method.
        method: &'static str,
        /// What to set, with an example.
        example: &'static str,
    },
    /// A value breaks its rule.
    #[error("{key}: invalid value {value:?}: {allowed}")]
    Invalid {
        /// The key path.
        key: String,
        /// The value as given.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// A list holds a value twice.
    #[error("{key}: duplicate value {value:?}: each may be listed once")]
    Duplicate {
        /// The key path of the second occurrence.
        key: String,
        /// The repeated value.
        value: String,
    },
    /// A list is longer than the policy allows.
    #[error("{key}: {count} entries, at most {max} are allowed")]
    TooMany {
        /// The key.
        key: &'static str,
        /// How many were given.
        count: usize,
        /// The maximum.
        max: usize,
    },
    /// A nested Kubernetes object has a key its type does not know.
    #[error("{key}: unknown key: not a field of this Kubernetes object (check its spelling)")]
    UnknownKey {
        /// The key path.
        key: String,
    },
}

impl SettingsError {
    /// An [`SettingsError::Invalid`] from a syntax rule's answer.
    pub fn invalid(key: impl Into<String>, value: &str, allowed: impl Into<String>) -> Self {
        Self::invalid_owned(key.into(), value, allowed.into())
    }

    /// The body of [`SettingsError::invalid`], one copy for every kind of key and answer
    /// (the generic shell is one per pair of argument types).
    #[inline(never)]
    fn invalid_owned(key: String, value: &str, allowed: String) -> Self {
        SettingsError::Invalid {
            key,
            value: value.to_string(),
            allowed,
        }
    }
}
