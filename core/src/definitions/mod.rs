//! Definitions: a whole node's (or one vhost's) users, vhosts, permissions, exchanges, queues
//! and bindings as one JSON document, in the format RabbitMQ 3.10 exports and imports
//! (`GET`/`POST /api/definitions`, `load_definitions`), so a RabbitMQ export moves into Warren
//! and back unchanged.
//!
//! - this file: the format, as serde structs that read partial files (every list may be
//!   absent) and ignore keys Warren does not know;
//! - [`export`]: the live state as definitions;
//! - [`import`]: definitions applied through the broker's own operations (the same
//!   declares, binds and user changes AMQP and the API use), checked in full before anything
//!   changes, shared by the HTTP endpoint and `--load-definitions` at start.
//!
//! Kinds Warren has no equivalent of (`parameters`, `global_parameters`, `policies`,
//! `topic_permissions`, user and vhost `limits`) are read as nothing, with a warning naming
//! them, rather than failing a file RabbitMQ wrote.

pub mod export;
pub mod import;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use export::{export_node, export_vhost};
pub use import::{ImportError, Imported, Scope, import};

/// The RabbitMQ release whose definitions format this is (the `rabbit_version` written).
pub const RABBITMQ_VERSION: &str = "3.10.8";

/// A definitions document. Every list defaults to empty, so a file with only `queues` is a
/// valid import.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Definitions {
    /// The RabbitMQ version that wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rabbit_version: Option<String>,
    /// The same, under its newer name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rabbitmq_version: Option<String>,
    /// `RabbitMQ`, or `Warren` in Warren's exports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    /// The writing product's version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_version: Option<String>,
    /// Users with their password hashes.
    pub users: Vec<UserEntry>,
    /// Virtual hosts.
    pub vhosts: Vec<VHostEntry>,
    /// Users' permissions per vhost.
    pub permissions: Vec<PermissionEntry>,
    /// Topic permissions (not imported: Warren has none).
    pub topic_permissions: Vec<Value>,
    /// Runtime parameters (not imported: Warren has none).
    pub parameters: Vec<Value>,
    /// Global parameters (not imported).
    pub global_parameters: Vec<Value>,
    /// Policies (not imported: Warren has none).
    pub policies: Vec<Value>,
    /// Queues.
    pub queues: Vec<QueueEntry>,
    /// Exchanges.
    pub exchanges: Vec<ExchangeEntry>,
    /// Bindings.
    pub bindings: Vec<BindingEntry>,
}

/// One vhost's definitions, as `GET /api/definitions/{vhost}` has them: no users, vhosts or
/// permissions, and objects without a `vhost` field.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct VHostDefinitions {
    /// The RabbitMQ version of the format.
    pub rabbit_version: String,
    /// Runtime parameters (always empty in Warren's exports).
    pub parameters: Vec<Value>,
    /// Policies (always empty in Warren's exports).
    pub policies: Vec<Value>,
    /// Queues.
    pub queues: Vec<QueueEntry>,
    /// Exchanges.
    pub exchanges: Vec<ExchangeEntry>,
    /// Bindings.
    pub bindings: Vec<BindingEntry>,
}

/// Tags as RabbitMQ writes them: 3.10 exports a list, older files and hand-written ones a
/// comma-separated string. Read either, always written as a list.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Tags {
    /// `["administrator", "monitoring"]`.
    List(Vec<String>),
    /// `"administrator,monitoring"`.
    Text(String),
}

impl Default for Tags {
    fn default() -> Tags {
        Tags::List(Vec::new())
    }
}

impl Tags {
    /// The tags, trimmed, empty ones dropped.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Tags::List(list) => list
                .iter()
                .map(|t| t.trim())
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
            Tags::Text(text) => crate::auth::user::parse_tags(text),
        }
    }
}

/// A user.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct UserEntry {
    /// Its name.
    pub name: String,
    /// Salt and digest, base64 (empty: no password).
    #[serde(default)]
    pub password_hash: String,
    /// RabbitMQ's name of the hash; absent means SHA-256, as in RabbitMQ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashing_algorithm: Option<String>,
    /// A clear-text password, which hand-written files may carry instead of a hash (hashed
    /// at import, never exported).
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// Its tags.
    #[serde(default)]
    pub tags: Tags,
    /// Per-user limits (not imported: Warren has none; exported as `{}`).
    #[serde(default = "empty_object")]
    pub limits: Value,
}

/// A virtual host. RabbitMQ 3.10 writes only its name; newer releases put the description
/// and tags in `metadata`, and some tools write them at the top: all three are read.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VHostEntry {
    /// Its name.
    pub name: String,
    /// Its description and tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<VHostMetadata>,
    /// Its description (older tools' place for it).
    #[serde(default, skip_serializing)]
    pub description: Option<String>,
    /// Its tags (older tools' place for them).
    #[serde(default, skip_serializing)]
    pub tags: Option<Tags>,
    /// Per-vhost limits (not imported: Warren has none).
    #[serde(default, skip_serializing)]
    pub limits: Option<Value>,
}

/// What an operator said about a vhost.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct VHostMetadata {
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// Free-form tags.
    #[serde(default)]
    pub tags: Tags,
}

/// A user's permissions in a vhost: three regular expressions.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PermissionEntry {
    /// The user.
    pub user: String,
    /// The vhost.
    pub vhost: String,
    /// Names it may declare and delete.
    pub configure: String,
    /// Names it may publish to or bind to.
    pub write: String,
    /// Names it may consume from or bind from.
    pub read: String,
}

/// A queue.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct QueueEntry {
    /// Its name.
    pub name: String,
    /// Its vhost (absent in a one-vhost document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost: Option<String>,
    /// Survives a restart. Absent means durable: definitions describe what a node keeps.
    #[serde(default = "yes")]
    pub durable: bool,
    /// Deleted when its last consumer goes.
    #[serde(default)]
    pub auto_delete: bool,
    /// Declare arguments.
    #[serde(default = "empty_object")]
    pub arguments: Value,
}

/// An exchange.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ExchangeEntry {
    /// Its name.
    pub name: String,
    /// Its vhost (absent in a one-vhost document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost: Option<String>,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Survives a restart. Absent means durable, as for queues.
    #[serde(default = "yes")]
    pub durable: bool,
    /// Deleted when its last binding goes.
    #[serde(default)]
    pub auto_delete: bool,
    /// Cannot be published to directly.
    #[serde(default)]
    pub internal: bool,
    /// Declare arguments.
    #[serde(default = "empty_object")]
    pub arguments: Value,
}

/// A binding.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BindingEntry {
    /// The source exchange.
    pub source: String,
    /// Its vhost (absent in a one-vhost document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost: Option<String>,
    /// The destination's name.
    pub destination: String,
    /// `queue` or `exchange`.
    pub destination_type: String,
    /// The binding key.
    #[serde(default)]
    pub routing_key: String,
    /// Binding arguments.
    #[serde(default = "empty_object")]
    pub arguments: Value,
}

fn yes() -> bool {
    true
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// Reads a definitions document; the reason names where the JSON is wrong.
pub fn parse(bytes: &[u8]) -> Result<Definitions, ImportError> {
    serde_json::from_slice(bytes).map_err(|e| ImportError::Parse(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_files_and_both_tag_forms_parse() {
        let defs = parse(
            br#"{"users": [{"name": "a", "password_hash": "", "tags": "x, y"},
                           {"name": "b", "tags": ["z"]}],
                 "future_key": 1}"#,
        )
        .expect("a partial file");
        assert_eq!(defs.users[0].tags.to_vec(), ["x", "y"]);
        assert_eq!(defs.users[1].tags.to_vec(), ["z"]);
        assert!(defs.queues.is_empty());
    }

    #[test]
    fn a_wrong_field_type_is_a_parse_error_naming_the_place() {
        let e = parse(br#"{"queues": [{"name": 5}]}"#).expect_err("a number is no name");
        assert!(e.to_string().contains("line 1"), "{e}");
    }
}
