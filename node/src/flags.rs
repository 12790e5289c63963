//! The flags every node plugin shares (how sockets are watched, metrics, logs), and the
//! parsers that refuse a bad value at start. Each flag has an `AGENT_MOUNT_<FLAG>`
//! environment variable. Each plugin's own flags are in its folder
//! ([`crate::device_plugin::config`], [`crate::csi::config`]); [`crate::cli`] puts them
//! together under the subcommands.

use agent_mount_common::syntax;
use clap::{Args, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A shared flag's value refused at start; clap prefixes the message with the flag's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not an absolute, normalised path.
    #[error(
        "{value:?} is not usable as a path ({reason}); give an absolute path without '.', '..' or '//', such as /var/odigos"
    )]
    Path {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Not a duration.
    #[error("{value:?} is not a duration ({reason}); use a duration such as 500ms, 2s or 1m")]
    Duration {
        /// The value given.
        value: String,
        /// What the parser said.
        reason: String,
    },
    /// A zero duration, which would make a busy loop.
    #[error("{value:?} is zero; use a duration greater than zero, such as 500ms")]
    ZeroDuration {
        /// The value given.
        value: String,
    },
}

/// How a plugin notices that its sockets were removed or replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WatchMode {
    /// inotify on the socket directories, with polling as a safety net.
    Auto,
    /// Polling only, for nodes where inotify instances are exhausted.
    Poll,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags every node plugin takes; each plugin's flags flatten this struct.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct Common {
    /// How removed or replaced sockets are noticed.
    #[arg(long, env = "AGENT_MOUNT_WATCH", value_enum, default_value_t = WatchMode::Auto)]
    pub watch: WatchMode,
    /// Polling period for sockets and health, e.g. 500ms or 1s.
    #[arg(long, env = "AGENT_MOUNT_POLL_INTERVAL", default_value = "500ms", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Address for Prometheus /metrics and /healthz, e.g. 127.0.0.1:9464 (off when unset).
    #[arg(long, env = "AGENT_MOUNT_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Log format.
    #[arg(long, env = "AGENT_MOUNT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Parses an absolute, normalised path.
pub fn parse_absolute_path(value: &str) -> Result<PathBuf, ConfigError> {
    syntax::absolute_path(value)
        .map(|()| PathBuf::from(value))
        .map_err(|reason| ConfigError::Path {
            value: value.into(),
            reason,
        })
}

/// Parses a positive duration such as `500ms`, `2s` or `1m` (humantime's syntax, which
/// refuses values that overflow instead of wrapping).
pub fn parse_duration(value: &str) -> Result<Duration, ConfigError> {
    let duration = humantime::parse_duration(value).map_err(|e| ConfigError::Duration {
        value: value.into(),
        reason: e.to_string(),
    })?;
    if duration.is_zero() {
        return Err(ConfigError::ZeroDuration {
            value: value.into(),
        });
    }
    Ok(duration)
}

/// Test helpers for any set of flags: parse it alone, and find why a value was refused.
#[cfg(test)]
pub(crate) mod testing {
    use clap::{Args, Parser};

    #[derive(Parser, Debug)]
    struct Alone<T: Args> {
        #[command(flatten)]
        flags: T,
    }

    /// Parses `args` as the flags `T` alone.
    pub(crate) fn parse<T: Args>(args: &[&str]) -> Result<T, clap::Error> {
        Alone::try_parse_from(["plugin"].iter().chain(args)).map(|alone| alone.flags)
    }

    /// The `E` a parser returned for `args`, which `T` must refuse.
    pub(crate) fn refusal<T: Args + std::fmt::Debug, E: std::error::Error + Clone + 'static>(
        args: &[&str],
    ) -> E {
        let err = parse::<T>(args).unwrap_err();
        std::error::Error::source(&err)
            .and_then(|source| source.downcast_ref::<E>())
            .unwrap_or_else(|| panic!("{args:?}: not the expected error: {err}"))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::refusal;
    use super::*;

    fn parse(args: &[&str]) -> Result<Common, clap::Error> {
        testing::parse(args)
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(matches!(
            parse_duration("5"),
            Err(ConfigError::Duration { .. })
        ));
    }

    #[test]
    fn defaults() {
        assert_eq!(
            parse(&[]).unwrap(),
            Common {
                watch: WatchMode::Auto,
                poll_interval: Duration::from_millis(500),
                metrics_addr: None,
                log_format: LogFormat::Text,
            }
        );
    }

    #[test]
    fn bad_flags_are_refused_with_the_reason() {
        type Check = fn(&ConfigError) -> bool;
        let cases: [(&[&str], Check); 3] = [
            (
                &["--poll-interval", "fast"],
                |e| matches!(e, ConfigError::Duration { value, .. } if value == "fast"),
            ),
            (&["--poll-interval", "0s"], |e| {
                matches!(e, ConfigError::ZeroDuration { .. })
            }),
            // `number * 60` overflowed here once; humantime refuses it.
            (&["--poll-interval", "999999999999999999999m"], |e| {
                matches!(e, ConfigError::Duration { .. })
            }),
        ];
        for (args, check) in cases {
            let refused: ConfigError = refusal::<Common, _>(args);
            assert!(check(&refused), "{args:?}: {refused:?}");
        }
        assert!(matches!(
            parse_absolute_path("var/odigos"),
            Err(ConfigError::Path { value, .. }) if value == "var/odigos"
        ));
    }

    #[test]
    fn clap_checks_the_rest() {
        use clap::error::ErrorKind;
        for (args, kind) in [
            (["--metrics-addr", "localhost"], ErrorKind::ValueValidation),
            (["--watch", "sometimes"], ErrorKind::InvalidValue),
        ] {
            assert_eq!(parse(&args).unwrap_err().kind(), kind, "{args:?}");
        }
    }
}
