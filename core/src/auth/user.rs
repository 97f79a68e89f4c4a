//! A user: a name, a password hash and tags. Tags are free-form strings, as in RabbitMQ;
//! four of them mean something to the management API (see [`User::can_manage`] and the
//! others).

use bytes::Bytes;

use super::password::{Hashing, PasswordHash};
use crate::store::UserDefinition;

/// Full access to the management API: users, vhosts, permissions, every object.
pub const ADMINISTRATOR: &str = "administrator";
/// Sees every vhost's objects, connections and channels, changes nothing it has no
/// permission for.
pub const MONITORING: &str = "monitoring";
/// Manages policies and parameters (Warren has neither yet: as `management`).
pub const POLICYMAKER: &str = "policymaker";
/// Uses the management API for the vhosts it has permissions in.
pub const MANAGEMENT: &str = "management";

/// A user.
#[derive(Clone, Debug)]
pub struct User {
    /// The name it logs in with.
    pub name: String,
    /// Its password, hashed.
    pub password: PasswordHash,
    /// Its tags, in the order given.
    pub tags: Vec<String>,
}

impl User {
    /// A user with `password` hashed afresh.
    pub fn new(name: &str, password: &str, tags: Vec<String>) -> User {
        User {
            name: name.to_owned(),
            password: PasswordHash::new(password),
            tags,
        }
    }

    /// Whether it has `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// Tagged `administrator`.
    pub fn is_administrator(&self) -> bool {
        self.has_tag(ADMINISTRATOR)
    }

    /// Sees everything (`administrator` or `monitoring`).
    pub fn can_monitor(&self) -> bool {
        self.is_administrator() || self.has_tag(MONITORING)
    }

    /// May use the management API at all (any of the four management tags).
    pub fn can_manage(&self) -> bool {
        self.can_monitor() || self.has_tag(POLICYMAKER) || self.has_tag(MANAGEMENT)
    }

    /// As stored.
    pub fn definition(&self) -> UserDefinition {
        UserDefinition {
            name: self.name.clone(),
            password_hash: Bytes::from(self.password.salted.clone()),
            hashing_algorithm: self.password.hashing.name().to_owned(),
            tags: self.tags.clone(),
        }
    }

    /// From a stored definition (an unknown hash name is read as SHA-256, which then
    /// matches no password: the user is kept, and a new password mends it).
    pub fn from_definition(d: &UserDefinition) -> User {
        User {
            name: d.name.clone(),
            password: PasswordHash {
                hashing: Hashing::from_name(&d.hashing_algorithm).unwrap_or(Hashing::Sha256),
                salted: d.password_hash.to_vec(),
            },
            tags: d.tags.clone(),
        }
    }
}

/// Reads tags as RabbitMQ's API and CLI take them: a comma-separated string (`"a,b"`,
/// spaces allowed) or a list; empty entries dropped.
pub fn parse_tags(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_decide_what_the_management_api_allows() {
        let user = |tags: &str| User::new("u", "p", parse_tags(tags));
        assert!(user("administrator").can_manage() && user("administrator").can_monitor());
        assert!(user("monitoring").can_monitor() && !user("monitoring").is_administrator());
        assert!(user("management").can_manage() && !user("management").can_monitor());
        assert!(user("policymaker").can_manage());
        assert!(!user("").can_manage() && !user("impersonator").can_manage());
    }

    #[test]
    fn tags_are_read_comma_separated() {
        assert_eq!(
            parse_tags(" administrator, monitoring,,"),
            vec!["administrator", "monitoring"]
        );
        assert!(parse_tags("").is_empty());
    }

    #[test]
    fn a_user_survives_its_definition() {
        let user = User::new("bob", "pw", vec!["management".into()]);
        let back = User::from_definition(&user.definition());
        assert!(back.password.verify(b"pw"));
        assert_eq!(back.tags, user.tags);
    }
}
