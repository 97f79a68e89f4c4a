//! Settings from the command line, `WARREN_*` environment variables and an optional TOML
//! file, merged into a [`server::Config`](crate::server::Config).
//!
//! Precedence: flag or environment variable, then the file, then the defaults. The file uses
//! the flags' names with underscores (`listen`, `management_listen`, `prometheus_listen`,
//! `data_dir`, `plugins_dir`,
//! `log_level`, `sync`, `disk_free_limit`, `default_user`, `default_pass`,
//! `load_definitions`, plus `loopback_users` (a list),
//! `frame_max`, `channel_max`, `heartbeat`, `max_message_size`, `tls_cert`, `tls_key`,
//! `tls_ca`, `tls_verify_peer` (a boolean), `tls_listen`, `management_tls_listen`,
//! `memory_high_watermark`, `max_connections`, `max_connections_per_vhost`,
//! `max_connections_per_user`, `max_queues_per_vhost`, `max_consumers_per_channel` (each 0
//! or absent: unlimited), `collect_statistics_interval` (milliseconds, RabbitMQ's key)); unknown keys are an error so a typo does not silently fall back
//! to a default.
//!
//! TLS (AMQPS and HTTPS) is on when `tls_cert` and `tls_key` are both given; `tls_ca` asks
//! clients for a certificate (optional unless `tls_verify_peer`).
//!
//! `sync` is `always` (the default: a confirm means the message was synced to disk) or
//! `interval:<duration>` (e.g. `interval:100ms`: synced on that timer, see
//! [`SyncPolicy`]). `disk_free_limit` is a size (`50MB`, `1GiB`, `52428800`; `0` turns the
//! disk alarm off). `memory_high_watermark` is a fraction of the available memory (`0.4`,
//! with a decimal point) or a size (`1GiB`); see [`MemoryWatermark`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::alarm::MemoryWatermark;
use crate::server::Config;
use crate::store::SyncPolicy;

/// The TOML config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listen address.
    pub listen: Option<SocketAddr>,
    /// The user created on first start.
    pub default_user: Option<String>,
    /// Its password.
    pub default_pass: Option<String>,
    /// Users who may only connect from loopback (a list; empty allows every user from
    /// anywhere).
    pub loopback_users: Option<Vec<String>>,
    /// A definitions file (RabbitMQ's JSON export) imported at start.
    pub load_definitions: Option<PathBuf>,
    /// Management API address.
    pub management_listen: Option<SocketAddr>,
    /// Prometheus endpoint address.
    pub prometheus_listen: Option<SocketAddr>,
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
    /// When stores sync (`always`, `interval:<duration>`).
    pub sync: Option<String>,
    /// Free disk space below which publishers are blocked (a size).
    pub disk_free_limit: Option<String>,
    /// The server's TLS certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// CA certificates client certificates are verified against (PEM).
    pub tls_ca: Option<PathBuf>,
    /// Refuse TLS clients without a certificate.
    pub tls_verify_peer: Option<bool>,
    /// AMQPS listen address.
    pub tls_listen: Option<SocketAddr>,
    /// Management API HTTPS address.
    pub management_tls_listen: Option<SocketAddr>,
    /// Memory held above which publishers are blocked (a fraction or a size).
    pub memory_high_watermark: Option<String>,
    /// Open connections on the node.
    pub max_connections: Option<usize>,
    /// Open connections per vhost.
    pub max_connections_per_vhost: Option<usize>,
    /// Open connections per user.
    pub max_connections_per_user: Option<usize>,
    /// Queues per vhost.
    pub max_queues_per_vhost: Option<usize>,
    /// Consumers per channel.
    pub max_consumers_per_channel: Option<usize>,
    /// How often statistics are sampled for rates (milliseconds).
    pub collect_statistics_interval: Option<u64>,
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
    /// A setting's value is not one it takes.
    #[error("invalid {setting} '{value}': {why}")]
    Invalid {
        /// The setting, as a flag.
        setting: &'static str,
        /// The value given.
        value: String,
        /// What it should look like.
        why: String,
    },
}

/// Reads `--sync`: `always`, or `interval:<duration>` (humantime, e.g. `100ms`).
pub fn parse_sync(value: &str) -> Result<SyncPolicy, ConfigError> {
    let invalid = |why: String| ConfigError::Invalid {
        setting: "--sync",
        value: value.to_owned(),
        why,
    };
    match value.split_once(':') {
        None if value == "always" => Ok(SyncPolicy::Always),
        Some(("interval", d)) => {
            let d = humantime::parse_duration(d.trim())
                .map_err(|e| invalid(format!("the interval is not a duration ({e})")))?;
            if d.is_zero() {
                return Err(invalid("the interval must be more than 0".into()));
            }
            Ok(SyncPolicy::Interval(d))
        }
        _ => Err(invalid(
            "expected 'always' or 'interval:<duration>' (e.g. interval:100ms)".into(),
        )),
    }
}

/// Reads a size: bytes, or a number with a unit (`kB`, `MB`, `GB`, `TB` powers of 1000;
/// `KiB`, `MiB`, `GiB`, `TiB` powers of 1024), as RabbitMQ's `disk_free_limit` takes them.
pub fn parse_size(setting: &'static str, value: &str) -> Result<u64, ConfigError> {
    let invalid = |why: &str| ConfigError::Invalid {
        setting,
        value: value.to_owned(),
        why: why.to_owned(),
    };
    let text = value.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| invalid("expected a whole number of bytes, optionally with a unit"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => {
            return Err(invalid(
                "unknown unit (use kB, MB, GB, TB, KiB, MiB, GiB or TiB)",
            ));
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| invalid("too large"))
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
    /// `--management-listen`.
    pub management_listen: Option<SocketAddr>,
    /// `--prometheus-listen`.
    pub prometheus_listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--plugins-dir`.
    pub plugins_dir: Option<PathBuf>,
    /// `--sync`.
    pub sync: Option<String>,
    /// `--disk-free-limit`.
    pub disk_free_limit: Option<String>,
    /// `--default-user`.
    pub default_user: Option<String>,
    /// `--default-pass`.
    pub default_pass: Option<String>,
    /// `--load-definitions`.
    pub load_definitions: Option<PathBuf>,
    /// `--loopback-users`.
    pub loopback_users: Option<Vec<String>>,
    /// `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`.
    pub tls_key: Option<PathBuf>,
    /// `--tls-ca`.
    pub tls_ca: Option<PathBuf>,
    /// `--tls-verify-peer` (given: `Some(true)`).
    pub tls_verify_peer: Option<bool>,
    /// `--tls-listen`.
    pub tls_listen: Option<SocketAddr>,
    /// `--management-tls-listen`.
    pub management_tls_listen: Option<SocketAddr>,
    /// `--memory-high-watermark`.
    pub memory_high_watermark: Option<String>,
    /// `--max-connections`.
    pub max_connections: Option<usize>,
    /// `--max-connections-per-vhost`.
    pub max_connections_per_vhost: Option<usize>,
    /// `--max-connections-per-user`.
    pub max_connections_per_user: Option<usize>,
    /// `--max-queues-per-vhost`.
    pub max_queues_per_vhost: Option<usize>,
    /// `--max-consumers-per-channel`.
    pub max_consumers_per_channel: Option<usize>,
    /// `--collect-statistics-interval` (milliseconds).
    pub collect_statistics_interval: Option<u64>,
}

/// Merges overrides, file and defaults. The plugins directory defaults to
/// `<data_dir>/plugins` when that exists.
pub fn resolve(overrides: Overrides, file: FileConfig) -> Result<Config, ConfigError> {
    let defaults = Config::default();
    let data_dir = overrides
        .data_dir
        .or(file.data_dir)
        .unwrap_or(defaults.data_dir.clone());
    let plugins_dir = overrides.plugins_dir.or(file.plugins_dir).or_else(|| {
        let dir = data_dir.join("plugins");
        dir.is_dir().then_some(dir)
    });
    let sync = match overrides.sync.or(file.sync) {
        Some(value) => parse_sync(&value)?,
        None => defaults.sync,
    };
    let disk_free_limit = match overrides.disk_free_limit.or(file.disk_free_limit) {
        Some(value) => parse_size("--disk-free-limit", &value)?,
        None => defaults.disk_free_limit,
    };
    let tls = resolve_tls(
        overrides.tls_cert.or(file.tls_cert),
        overrides.tls_key.or(file.tls_key),
        overrides.tls_ca.or(file.tls_ca),
        overrides
            .tls_verify_peer
            .or(file.tls_verify_peer)
            .unwrap_or(false),
    )?;
    let memory_high_watermark = match overrides
        .memory_high_watermark
        .or(file.memory_high_watermark)
    {
        Some(value) => MemoryWatermark::parse("--memory-high-watermark", &value)?,
        None => defaults.memory_high_watermark,
    };
    let stats_interval = match overrides
        .collect_statistics_interval
        .or(file.collect_statistics_interval)
    {
        Some(0) => {
            return Err(ConfigError::Invalid {
                setting: "--collect-statistics-interval",
                value: "0".to_owned(),
                why: "the sampling interval must be at least 1 ms".to_owned(),
            });
        }
        Some(ms) => std::time::Duration::from_millis(ms),
        None => defaults.stats_interval,
    };
    Ok(Config {
        stats_interval,
        listen: overrides.listen.or(file.listen).unwrap_or(defaults.listen),
        management_listen: overrides
            .management_listen
            .or(file.management_listen)
            .or(defaults.management_listen),
        prometheus_listen: overrides
            .prometheus_listen
            .or(file.prometheus_listen)
            .or(defaults.prometheus_listen),
        data_dir,
        plugins_dir,
        frame_max: file.frame_max.unwrap_or(defaults.frame_max),
        channel_max: file.channel_max.unwrap_or(defaults.channel_max),
        heartbeat: file.heartbeat.unwrap_or(defaults.heartbeat),
        max_message_size: file.max_message_size.unwrap_or(defaults.max_message_size),
        sync,
        disk_free_limit,
        default_user: overrides
            .default_user
            .or(file.default_user)
            .unwrap_or(defaults.default_user.clone()),
        default_pass: overrides
            .default_pass
            .or(file.default_pass)
            .unwrap_or(defaults.default_pass.clone()),
        loopback_users: overrides
            .loopback_users
            .or(file.loopback_users)
            .unwrap_or(defaults.loopback_users.clone()),
        load_definitions: overrides.load_definitions.or(file.load_definitions),
        tls,
        tls_listen: overrides
            .tls_listen
            .or(file.tls_listen)
            .unwrap_or(defaults.tls_listen),
        management_tls_listen: overrides
            .management_tls_listen
            .or(file.management_tls_listen)
            .or(defaults.management_tls_listen),
        memory_high_watermark,
        max_connections: overrides
            .max_connections
            .or(file.max_connections)
            .unwrap_or(defaults.max_connections),
        max_connections_per_vhost: overrides
            .max_connections_per_vhost
            .or(file.max_connections_per_vhost)
            .unwrap_or(defaults.max_connections_per_vhost),
        max_connections_per_user: overrides
            .max_connections_per_user
            .or(file.max_connections_per_user)
            .unwrap_or(defaults.max_connections_per_user),
        max_queues_per_vhost: overrides
            .max_queues_per_vhost
            .or(file.max_queues_per_vhost)
            .unwrap_or(defaults.max_queues_per_vhost),
        max_consumers_per_channel: overrides
            .max_consumers_per_channel
            .or(file.max_consumers_per_channel)
            .unwrap_or(defaults.max_consumers_per_channel),
        ..defaults
    })
}

/// The TLS settings: none without a certificate and key; a certificate without a key (or
/// the reverse), or a client CA or `--tls-verify-peer` without TLS, is an error rather than
/// a node silently without TLS.
fn resolve_tls(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
    verify_peer: bool,
) -> Result<Option<crate::tls::TlsSettings>, ConfigError> {
    let invalid =
        |setting: &'static str, value: &Option<PathBuf>, why: &str| ConfigError::Invalid {
            setting,
            value: value
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            why: why.to_owned(),
        };
    match (cert, key) {
        (Some(cert), Some(key)) => {
            if verify_peer && ca.is_none() {
                return Err(ConfigError::Invalid {
                    setting: "--tls-verify-peer",
                    value: "true".to_owned(),
                    why: "client certificates can only be verified with --tls-ca".to_owned(),
                });
            }
            Ok(Some(crate::tls::TlsSettings {
                cert,
                key,
                ca,
                verify_peer,
            }))
        }
        (Some(cert), None) => Err(invalid(
            "--tls-cert",
            &Some(cert),
            "TLS also needs the private key (--tls-key)",
        )),
        (None, Some(key)) => Err(invalid(
            "--tls-key",
            &Some(key),
            "TLS also needs the certificate (--tls-cert)",
        )),
        (None, None) if ca.is_some() => Err(invalid(
            "--tls-ca",
            &ca,
            "client certificates need TLS: give --tls-cert and --tls-key too",
        )),
        (None, None) if verify_peer => Err(ConfigError::Invalid {
            setting: "--tls-verify-peer",
            value: "true".to_owned(),
            why: "client certificates need TLS: give --tls-cert, --tls-key and --tls-ca".to_owned(),
        }),
        (None, None) => Ok(None),
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
        )
        .expect("valid");
        assert_eq!(config.listen.port(), 2);
        assert_eq!(config.heartbeat, 5);
        assert_eq!(config.frame_max, 131_072);
        assert_eq!(
            config.management_listen,
            Some(crate::server::DEFAULT_MANAGEMENT_LISTEN)
        );
    }

    #[test]
    fn prometheus_listen_comes_from_the_file_unless_a_flag_moves_it() {
        let file = || -> FileConfig {
            toml::from_str("prometheus_listen = \"127.0.0.1:9\"\n").expect("parses")
        };
        let config = resolve(Overrides::default(), file()).expect("valid");
        assert_eq!(config.prometheus_listen.map(|a| a.port()), Some(9));
        let flag = Overrides {
            prometheus_listen: Some("127.0.0.1:8".parse().expect("addr")),
            ..Overrides::default()
        };
        let config = resolve(flag, file()).expect("valid");
        assert_eq!(config.prometheus_listen.map(|a| a.port()), Some(8));
        let config = resolve(Overrides::default(), FileConfig::default()).expect("valid");
        assert_eq!(config.prometheus_listen.map(|a| a.port()), Some(15692));
    }

    #[test]
    fn management_listen_comes_from_the_file() {
        let file: FileConfig =
            toml::from_str("management_listen = \"127.0.0.1:9\"\n").expect("parses");
        let config = resolve(Overrides::default(), file).expect("valid");
        assert_eq!(config.management_listen.map(|a| a.port()), Some(9));
    }

    #[test]
    fn sync_and_disk_free_limit_are_read_and_checked() {
        let file: FileConfig =
            toml::from_str("sync = \"interval:250ms\"\ndisk_free_limit = \"1GiB\"\n")
                .expect("parses");
        let config = resolve(Overrides::default(), file).expect("valid");
        assert_eq!(
            config.sync,
            SyncPolicy::Interval(std::time::Duration::from_millis(250))
        );
        assert_eq!(config.disk_free_limit, 1 << 30);
        let defaults = resolve(Overrides::default(), FileConfig::default()).expect("valid");
        assert_eq!(defaults.sync, SyncPolicy::Always, "safe by default");
        assert_eq!(defaults.disk_free_limit, 50_000_000, "RabbitMQ's 50MB");
        assert_eq!(parse_size("x", "50MB").expect("size"), 50_000_000);
        assert_eq!(parse_size("x", "0").expect("size"), 0);
        for bad in ["", "MB", "5 parsecs", "1.5GB", "99999999999999TB"] {
            let err = parse_size("--disk-free-limit", bad).expect_err(bad);
            assert!(
                err.to_string().starts_with("invalid --disk-free-limit"),
                "{err}"
            );
        }
        for bad in ["sometimes", "interval:", "interval:0s", "interval:soon"] {
            let err = parse_sync(bad).expect_err(bad);
            assert!(err.to_string().contains("--sync"), "{err}");
        }
    }

    #[test]
    fn the_memory_high_watermark_comes_from_a_flag_or_the_file() {
        let defaults = resolve(Overrides::default(), FileConfig::default()).expect("valid");
        assert_eq!(
            defaults.memory_high_watermark,
            MemoryWatermark::Relative(0.4),
            "RabbitMQ's 0.4"
        );
        let file: FileConfig =
            toml::from_str("memory_high_watermark = \"1GiB\"\n").expect("parses");
        let from_file = resolve(Overrides::default(), file).expect("valid");
        assert_eq!(
            from_file.memory_high_watermark,
            MemoryWatermark::Absolute(1 << 30)
        );
        let flag = Overrides {
            memory_high_watermark: Some("0.25".into()),
            ..Overrides::default()
        };
        let file: FileConfig =
            toml::from_str("memory_high_watermark = \"1GiB\"\n").expect("parses");
        let config = resolve(flag, file).expect("valid");
        assert_eq!(
            config.memory_high_watermark,
            MemoryWatermark::Relative(0.25)
        );
        let bad = Overrides {
            memory_high_watermark: Some("2.5".into()),
            ..Overrides::default()
        };
        let err = resolve(bad, FileConfig::default()).expect_err("above 1");
        assert!(
            err.to_string()
                .starts_with("invalid --memory-high-watermark '2.5'"),
            "{err}"
        );
    }

    #[test]
    fn users_and_loopback_rules_come_from_flags_or_the_file() {
        let file: FileConfig = toml::from_str(
            "default_user = \"admin\"\ndefault_pass = \"pw\"\nloopback_users = []\n",
        )
        .expect("parses");
        let config = resolve(Overrides::default(), file).expect("valid");
        assert_eq!(
            (config.default_user.as_str(), config.default_pass.as_str()),
            ("admin", "pw")
        );
        assert!(config.loopback_users.is_empty(), "the file lifts the rule");
        let defaults = resolve(Overrides::default(), FileConfig::default()).expect("valid");
        assert_eq!(defaults.loopback_users, vec!["guest".to_owned()]);
        let flagged = resolve(
            Overrides {
                loopback_users: Some(vec!["ops".into()]),
                ..Overrides::default()
            },
            FileConfig::default(),
        )
        .expect("valid");
        assert_eq!(flagged.loopback_users, vec!["ops".to_owned()]);
    }

    #[test]
    fn tls_needs_a_certificate_and_a_key() {
        let none = resolve(Overrides::default(), FileConfig::default()).expect("valid");
        assert_eq!(none.tls, None, "off by default");
        assert_eq!(none.tls_listen.port(), 5671);
        assert_eq!(none.management_tls_listen.map(|a| a.port()), Some(15671));
        let file: FileConfig = toml::from_str(
            "tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\ntls_ca = \"ca.pem\"\n\
             tls_verify_peer = true\ntls_listen = \"127.0.0.1:7\"\n",
        )
        .expect("parses");
        let config = resolve(Overrides::default(), file).expect("valid");
        let tls = config.tls.expect("on");
        assert_eq!(tls.cert, PathBuf::from("c.pem"));
        assert_eq!(tls.ca, Some(PathBuf::from("ca.pem")));
        assert!(tls.verify_peer);
        assert_eq!(config.tls_listen.port(), 7);
        let half = Overrides {
            tls_cert: Some("c.pem".into()),
            ..Overrides::default()
        };
        let err = resolve(half, FileConfig::default()).expect_err("no key");
        assert!(err.to_string().contains("--tls-key"), "{err}");
        let ca_only = Overrides {
            tls_ca: Some("ca.pem".into()),
            ..Overrides::default()
        };
        let err = resolve(ca_only, FileConfig::default()).expect_err("no TLS");
        assert!(err.to_string().contains("--tls-cert"), "{err}");
        let verify_without_ca = Overrides {
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            tls_verify_peer: Some(true),
            ..Overrides::default()
        };
        let err = resolve(verify_without_ca, FileConfig::default()).expect_err("no CA");
        assert!(err.to_string().contains("--tls-ca"), "{err}");
    }

    #[test]
    fn limits_come_from_flags_or_the_file_and_default_to_unlimited() {
        let file: FileConfig = toml::from_str(
            "max_connections = 100\nmax_queues_per_vhost = 5\nmax_consumers_per_channel = 9\n",
        )
        .unwrap();
        let config = resolve(
            Overrides {
                max_connections: Some(7),
                max_connections_per_user: Some(2),
                ..Overrides::default()
            },
            file,
        )
        .unwrap();
        assert_eq!(config.max_connections, 7, "the flag wins over the file");
        assert_eq!(config.max_connections_per_user, 2);
        assert_eq!(config.max_connections_per_vhost, 0, "unlimited by default");
        assert_eq!(config.max_queues_per_vhost, 5);
        assert_eq!(config.max_consumers_per_channel, 9);
    }

    #[test]
    fn the_statistics_interval_is_milliseconds_from_the_flag_or_file_and_never_zero() {
        let file: FileConfig = toml::from_str("collect_statistics_interval = 250\n").unwrap();
        let config = resolve(Overrides::default(), file).unwrap();
        assert_eq!(config.stats_interval, std::time::Duration::from_millis(250));
        let defaults = resolve(Overrides::default(), FileConfig::default()).unwrap();
        assert_eq!(defaults.stats_interval, crate::stats::DEFAULT_INTERVAL);
        let zero = Overrides {
            collect_statistics_interval: Some(0),
            ..Overrides::default()
        };
        let err = resolve(zero, FileConfig::default()).expect_err("0 refused");
        assert!(
            err.to_string().contains("--collect-statistics-interval"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
    }
}
