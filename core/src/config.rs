//! Settings from the command line, `WARREN_*` environment variables and an optional TOML
//! file, merged into a [`server::Config`](crate::server::Config).
//!
//! Precedence: flag or environment variable, then the file, then the defaults. The file uses
//! the flags' names with underscores (`listen`, `admin_listen`, `data_dir`, `plugins_dir`,
//! `log_level`, plus
//! `frame_max`, `channel_max`, `heartbeat`, `max_message_size`); unknown keys are an error so
//! a typo does not silently fall back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::server::Config;

/// The TOML config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listen address.
    pub listen: Option<SocketAddr>,
    /// Admin interface address.
    pub admin_listen: Option<SocketAddr>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Plugins directory.
    pub plugins_dir: Option<PathBuf>,
    /// Log filter (`info`, `warren=debug`, …).
    pub log_level: Option<String>,
    /// frame_max offered.
    pub frame_max: Option<u32>,
    /// channel_max offered.
    pub channel_max: Option<u16>,
    /// Heartbeat offered (seconds).
    pub heartbeat: Option<u16>,
    /// Largest message body (bytes).
    pub max_message_size: Option<usize>,
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for these settings.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: toml::de::Error,
    },
}

impl FileConfig {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }
}

/// Values given on the command line or in the environment (each overrides the file).
#[derive(Debug, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--admin-listen`.
    pub admin_listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--plugins-dir`.
    pub plugins_dir: Option<PathBuf>,
}

/// Merges overrides, file and defaults. The plugins directory defaults to
/// `<data_dir>/plugins` when that exists.
pub fn resolve(overrides: Overrides, file: FileConfig) -> Config {
    let defaults = Config::default();
    let data_dir = overrides
        .data_dir
        .or(file.data_dir)
        .unwrap_or(defaults.data_dir.clone());
    let plugins_dir = overrides.plugins_dir.or(file.plugins_dir).or_else(|| {
        let dir = data_dir.join("plugins");
        dir.is_dir().then_some(dir)
    });
    Config {
        listen: overrides.listen.or(file.listen).unwrap_or(defaults.listen),
        admin_listen: overrides
            .admin_listen
            .or(file.admin_listen)
            .or(defaults.admin_listen),
        data_dir,
        plugins_dir,
        frame_max: file.frame_max.unwrap_or(defaults.frame_max),
        channel_max: file.channel_max.unwrap_or(defaults.channel_max),
        heartbeat: file.heartbeat.unwrap_or(defaults.heartbeat),
        max_message_size: file.max_message_size.unwrap_or(defaults.max_message_size),
        ..defaults
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let file: FileConfig =
            toml::from_str("listen = \"127.0.0.1:1\"\nheartbeat = 5\n").expect("parses");
        let config = resolve(
            Overrides {
                listen: Some("127.0.0.1:2".parse().expect("addr")),
                ..Overrides::default()
            },
            file,
        );
        assert_eq!(config.listen.port(), 2);
        assert_eq!(config.heartbeat, 5);
        assert_eq!(config.frame_max, 131_072);
        assert_eq!(
            config.admin_listen,
            Some(crate::server::DEFAULT_ADMIN_LISTEN)
        );
    }

    #[test]
    fn admin_listen_comes_from_the_file() {
        let file: FileConfig = toml::from_str("admin_listen = \"127.0.0.1:9\"\n").expect("parses");
        let config = resolve(Overrides::default(), file);
        assert_eq!(config.admin_listen.map(|a| a.port()), Some(9));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
    }
}
