//! Kubernetes syntax checks for the values a user puts in the settings.
//!
//! Each check returns `Err` with a short description of what is allowed; the
//! settings module prefixes it with the key and the bad value.

/// Longest DNS-1123 label and qualified-name segment.
const MAX_LABEL_LEN: usize = 63;
/// Longest DNS-1123 subdomain.
const MAX_SUBDOMAIN_LEN: usize = 253;

/// A DNS-1123 label: lowercase alphanumerics and `-`, starting and ending alphanumeric, at most 63.
pub fn dns_label(value: &str) -> Result<(), String> {
    let allowed = "a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)";
    let inner_ok = value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ends_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if value.len() <= MAX_LABEL_LEN
        && inner_ok
        && ends_ok(value.bytes().next())
        && ends_ok(value.bytes().last())
    {
        Ok(())
    } else {
        Err(format!("expected {allowed}"))
    }
}

/// A DNS-1123 subdomain: dot-separated DNS-1123 labels, at most 253 characters.
fn dns_subdomain(value: &str) -> bool {
    value.len() <= MAX_SUBDOMAIN_LEN && value.split('.').all(|label| dns_label(label).is_ok())
}

/// The name part of a qualified name: alphanumerics, `-`, `_`, `.`, alphanumeric at both ends.
fn qualified_name_part(value: &str) -> bool {
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    value.len() <= MAX_LABEL_LEN
        && alnum(value.bytes().next())
        && alnum(value.bytes().last())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A qualified name (label key, annotation key): `[prefix/]name`, the prefix a DNS subdomain.
pub fn qualified_name(value: &str) -> Result<(), String> {
    let ok = match value.split_once('/') {
        Some((prefix, name)) => dns_subdomain(prefix) && qualified_name_part(name),
        None => qualified_name_part(value),
    };
    if ok {
        Ok(())
    } else {
        Err("expected a qualified name '[prefix/]name': an optional DNS subdomain prefix, and a name of at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit".into())
    }
}

/// A label value: empty, or at most 63 alphanumerics, `-`, `_`, `.`, alphanumeric at both ends.
pub fn label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || qualified_name_part(value) {
        Ok(())
    } else {
        Err("expected a label value: empty, or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit".into())
    }
}

/// An extended resource name: `domain/name`, outside `kubernetes.io` and not starting with `requests.`.
pub fn extended_resource_name(value: &str) -> Result<(), String> {
    let allowed = "expected an extended resource name 'domain/name' (e.g. instrumentation.odigos.io/generic), outside the kubernetes.io domain and not starting with 'requests.'";
    let has_domain = value.split_once('/').is_some_and(|(d, _)| !d.is_empty());
    // Mirrors apimachinery's IsExtendedResourceName: `requests.<name>` must itself be a qualified name.
    let ok = has_domain
        && !value.contains("kubernetes.io/")
        && !value.starts_with("requests.")
        && qualified_name(&format!("requests.{value}")).is_ok();
    if ok { Ok(()) } else { Err(allowed.into()) }
}

/// An absolute, normalised path other than `/`: no `.` or `..` segment, no `//`, no trailing `/`.
pub fn absolute_path(value: &str) -> Result<(), String> {
    if value != "/" && is_normalised_absolute(value) {
        Ok(())
    } else {
        Err("expected an absolute, normalised path such as /var/odigos (starting with '/', no '.' or '..' segments, no '//', no trailing '/', not '/' itself)".into())
    }
}

/// An absolute, normalised path, `/` included (e.g. the root of an image).
pub fn absolute_path_or_root(value: &str) -> Result<(), String> {
    if is_normalised_absolute(value) {
        Ok(())
    } else {
        Err("expected an absolute, normalised path such as /instrumentations or / (starting with '/', no '.' or '..' segments, no '//', no trailing '/' except for '/' itself)".into())
    }
}

/// `/`, or `/` followed by non-empty segments that are neither `.` nor `..`.
fn is_normalised_absolute(value: &str) -> bool {
    match value.strip_prefix('/') {
        Some("") => true,
        Some(rest) => {
            !value.contains('\0')
                && rest
                    .split('/')
                    .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
        }
        None => false,
    }
}

/// A single path segment, used as a sub-directory name and a `subPath`.
pub fn path_segment(value: &str) -> Result<(), String> {
    if value.is_empty() || value == "." || value == ".." || value.contains(['/', '\0']) {
        Err("expected a single directory name (not empty, no '/', not '.' or '..')".into())
    } else {
        Ok(())
    }
}

/// A resource quantity by the Kubernetes grammar, such as `128Mi`, `500m`, `1.5G`, `1e3` or `+1Gi`.
pub fn quantity(value: &str) -> Result<(), String> {
    crate::quantity::parse(value)
        .map(|_| ())
        .map_err(|e| format!("expected a Kubernetes quantity such as 64Mi, 1Gi, 500m or 1e3 ({e})"))
}

/// A CSI driver name, as the CSIDriver object and the kubelet accept it: at most 63
/// lowercase alphanumerics, `-` and `.`, starting and ending alphanumeric.
pub fn csi_driver_name(value: &str) -> Result<(), String> {
    let lower_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let ends_ok = |b: Option<u8>| b.is_some_and(lower_alnum);
    let ok = value.len() <= MAX_LABEL_LEN
        && value
            .bytes()
            .all(|b| lower_alnum(b) || b == b'-' || b == b'.')
        && ends_ok(value.bytes().next())
        && ends_ok(value.bytes().last());
    if ok {
        Ok(())
    } else {
        Err("expected a CSI driver name such as odigos.csi.driver (at most 63 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)".into())
    }
}

/// A container image reference: not empty and free of white space.
pub fn image(value: &str) -> Result<(), String> {
    if value.is_empty() || value.chars().any(char::is_whitespace) {
        Err("expected a container image reference such as ghcr.io/example/agents:1.0 (not empty, no spaces)".into())
    } else {
        Ok(())
    }
}

/// An environment variable name as the API server accepts it everywhere (apimachinery's
/// `IsEnvVarName` before 1.34 relaxed it): `[-._a-zA-Z][-._a-zA-Z0-9]*`, and not `.`, `..`
/// or starting with `..` (its `hasChDirPrefix`).
pub fn env_var_name(value: &str) -> Result<(), String> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
    let ok = value.bytes().all(allowed)
        && value.bytes().next().is_some_and(|b| !b.is_ascii_digit())
        && !is_dot_or_dotdot_prefixed(value);
    if ok {
        Ok(())
    } else {
        Err("expected an environment variable name such as JAVA_TOOL_OPTIONS (letters, digits, '_', '-' and '.', not starting with a digit, not '.' and not starting with '..')".into())
    }
}

/// `.`, `..` or `..`-prefixed: apimachinery's `hasChDirPrefix`, refused in env names and keys.
fn is_dot_or_dotdot_prefixed(value: &str) -> bool {
    value == "." || value.starts_with("..")
}

/// The agents' path as it goes into the variables activation writes: nothing that the
/// runtimes split these variables on, or read as quoting. The JVM and Node.js split
/// `JAVA_TOOL_OPTIONS`/`NODE_OPTIONS` on whitespace and read quotes and `\`; `PYTHONPATH`
/// and `LD_PRELOAD` split on `:`; `OTEL_RESOURCE_ATTRIBUTES` and agent options on `,`,
/// `;` and `=` (`-javaagent:<jar>=<options>`).
pub fn splits_no_variable(value: &str) -> Result<(), String> {
    let Some(bad) = value.chars().find(|&c| {
        c.is_whitespace()
            || c.is_control()
            || matches!(c, ':' | ',' | ';' | '=' | '"' | '\'' | '\\')
    }) else {
        return Ok(());
    };
    let why = match bad {
        ' ' => "a space splits JAVA_TOOL_OPTIONS and NODE_OPTIONS into separate options".into(),
        '\t' => "a tab splits JAVA_TOOL_OPTIONS and NODE_OPTIONS into separate options".into(),
        '\n' => "a newline splits JAVA_TOOL_OPTIONS and NODE_OPTIONS into separate options".into(),
        c if c.is_whitespace() => format!(
            "a space (U+{:04X}) splits JAVA_TOOL_OPTIONS and NODE_OPTIONS into separate options",
            u32::from(c)
        ),
        c if c.is_control() => format!(
            "a control character (U+{:04X}) does not pass through an environment variable intact",
            u32::from(c)
        ),
        ':' => "':' splits PYTHONPATH and LD_PRELOAD into separate paths".into(),
        ',' => "',' splits OTEL_RESOURCE_ATTRIBUTES and the agents' option lists".into(),
        ';' => "';' separates the agents' own options".into(),
        '=' => "'=' starts an agent's options, as in -javaagent:<jar>=<options>".into(),
        '\\' => {
            "a backslash is read as an escape where JAVA_TOOL_OPTIONS and NODE_OPTIONS are split"
                .into()
        }
        _ => "a quote is read as quoting where JAVA_TOOL_OPTIONS and NODE_OPTIONS are split".into(),
    };
    Err(format!(
        "{why}; with activation, the agents' path may not hold whitespace, ':', ',', ';', '=', quotes, '\\' or control characters"
    ))
}

/// A DNS-1123 subdomain, e.g. the name of a ConfigMap or a Secret.
pub fn subdomain(value: &str) -> Result<(), String> {
    if dns_subdomain(value) {
        Ok(())
    } else {
        Err(
            "expected a DNS-1123 subdomain (dot-separated DNS-1123 labels, at most 253 characters)"
                .into(),
        )
    }
}

/// A key of a ConfigMap or Secret (apimachinery's `IsConfigMapKey`): at most 253
/// letters, digits, `-`, `_`, `.`, not `.` and not starting with `..`.
pub fn config_map_key(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= MAX_SUBDOMAIN_LEN
        && !is_dot_or_dotdot_prefixed(value)
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err("expected a ConfigMap or Secret key (at most 253 letters, digits, '-', '_' and '.', not '.' and not starting with '..')".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::simple("odigos-agent", true)]
    #[case::digits("a1", true)]
    #[case::uppercase("Odigos", false)]
    #[case::leading_dash("-a", false)]
    #[case::trailing_dash("a-", false)]
    #[case::dot("a.b", false)]
    #[case::empty("", false)]
    #[case::too_long(&"a".repeat(64), false)]
    fn dns_labels(#[case] value: &str, #[case] ok: bool) {
        assert_eq!(dns_label(value).is_ok(), ok, "{value}");
    }

    #[rstest]
    #[case::odigos("instrumentation.odigos.io/generic", true)]
    #[case::no_domain("generic", false)]
    #[case::empty_domain("/generic", false)]
    #[case::kubernetes_io("kubernetes.io/generic", false)]
    #[case::kubernetes_io_subdomain("foo.kubernetes.io/generic", false)]
    #[case::requests_prefix("requests.example.com/x", false)]
    #[case::bad_name("example.com/-x", false)]
    #[case::two_slashes("example.com/a/b", false)]
    fn extended_resource_names(#[case] value: &str, #[case] ok: bool) {
        assert_eq!(extended_resource_name(value).is_ok(), ok, "{value}");
    }

    #[rstest]
    #[case::odigos("/var/odigos", true)]
    #[case::deep("/a/b/c", true)]
    #[case::relative("var/odigos", false)]
    #[case::root("/", false)]
    #[case::dotdot("/var/../etc", false)]
    #[case::dot("/var/./odigos", false)]
    #[case::double_slash("/var//odigos", false)]
    #[case::trailing_slash("/var/odigos/", false)]
    #[case::empty("", false)]
    fn absolute_paths(#[case] value: &str, #[case] ok: bool) {
        assert_eq!(absolute_path(value).is_ok(), ok, "{value}");
    }

    #[rstest]
    #[case::plain("agent-mount.io/containers", true)]
    #[case::no_prefix("containers", true)]
    #[case::bad_prefix("Agent_Mount/containers", false)]
    #[case::empty_name("agent-mount.io/", false)]
    fn qualified_names(#[case] value: &str, #[case] ok: bool) {
        assert_eq!(qualified_name(value).is_ok(), ok, "{value}");
    }

    #[rstest]
    #[case::mebi("128Mi", true)]
    #[case::milli("100m", true)]
    #[case::plain("2", true)]
    #[case::decimal("1.5G", true)]
    #[case::exponent("1e3", true)]
    #[case::capital_exponent("2E-3", true)]
    #[case::signed("+1Gi", true)]
    #[case::leading_dot(".5", true)]
    #[case::trailing_dot("5.", true)]
    #[case::exa("1E", true)]
    #[case::nano("100n", true)]
    #[case::bad_suffix("12XB", false)]
    #[case::lone_e("1e", false)]
    #[case::lone_dot(".", false)]
    #[case::empty("", false)]
    #[case::no_number("Mi", false)]
    #[case::two_dots("1.2.3", false)]
    fn quantities(#[case] value: &str, #[case] ok: bool) {
        assert_eq!(quantity(value).is_ok(), ok, "{value}");
    }

    #[test]
    fn root_is_allowed_only_where_asked() {
        assert!(absolute_path_or_root("/").is_ok());
        assert!(absolute_path_or_root("/instrumentations").is_ok());
        assert!(absolute_path_or_root("/a/").is_err());
        assert!(absolute_path_or_root("a").is_err());
        assert!(absolute_path("/").is_err());
    }

    #[rstest]
    #[case::odigos("odigos.csi.driver", true)]
    #[case::dashes("agent-mount.example.com", true)]
    #[case::single("a", true)]
    #[case::longest(&"a".repeat(63), true)]
    #[case::too_long(&"a".repeat(64), false)]
    #[case::uppercase("Odigos.csi.driver", false)]
    #[case::underscore("odigos_csi", false)]
    #[case::slash("odigos/csi", false)]
    #[case::leading_dot(".odigos", false)]
    #[case::trailing_dash("odigos-", false)]
    #[case::empty("", false)]
    fn csi_driver_names(#[case] value: &str, #[case] ok: bool) {
        assert_eq!(csi_driver_name(value).is_ok(), ok, "{value}");
    }

    #[test]
    fn segments_and_label_values() {
        assert!(path_segment("java").is_ok());
        assert!(path_segment("a/b").is_err());
        assert!(path_segment("..").is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("true").is_ok());
        assert!(label_value("no spaces").is_err());
        assert!(image("busybox:1.36").is_ok());
        assert!(image("bad image").is_err());
    }

    #[rstest]
    #[case::upper("JAVA_TOOL_OPTIONS", true)]
    #[case::dotted("my.var-1", true)]
    #[case::leading_digit("1VAR", false)]
    #[case::equals("A=B", false)]
    #[case::space("A B", false)]
    #[case::empty("", false)]
    #[case::leading_dot(".x", true)]
    #[case::dot(".", false)]
    #[case::dotdot("..", false)]
    #[case::dotdot_prefix("..x", false)]
    fn env_var_names(#[case] value: &str, #[case] ok: bool) {
        assert_eq!(env_var_name(value).is_ok(), ok, "{value}");
    }

    #[test]
    fn subdomains_and_config_map_keys() {
        assert!(subdomain("otel-config").is_ok());
        assert!(subdomain("Otel").is_err());
        assert!(config_map_key("endpoint.url").is_ok());
        assert!(config_map_key("..").is_err());
        assert!(config_map_key("..a").is_err());
        assert!(config_map_key(".a").is_ok());
        assert!(config_map_key("a/b").is_err());
    }

    #[rstest]
    #[case::plain("/var/odigos", None)]
    #[case::dollar("/opt/$agents", None)]
    #[case::space("/opt/my agents", Some("a space splits"))]
    #[case::colon("/opt/a:b", Some("':' splits PYTHONPATH"))]
    #[case::quote("/opt/a\"b", Some("a quote"))]
    #[case::control("/opt/a\u{1}b", Some("a control character (U+0001)"))]
    fn paths_in_variables(#[case] value: &str, #[case] error: Option<&str>) {
        match (splits_no_variable(value), error) {
            (Ok(()), None) => {}
            (Err(e), Some(expected)) => assert!(e.starts_with(expected), "{e}"),
            (result, _) => panic!("{value:?}: {result:?}"),
        }
    }
}
