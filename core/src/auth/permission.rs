//! A user's permissions in one vhost: three regular expressions — configure, write, read —
//! matched against the names of exchanges and queues, with RabbitMQ's semantics:
//! - a pattern matches anywhere in the name unless anchored (`re:run` without anchors), so
//!   `.*` allows everything and `^amq\.gen` only server-named queues;
//! - the empty pattern allows nothing (RabbitMQ reads it as `^$`, and no resource is named
//!   with the empty string: the default exchange is checked as `amq.default`).

use regex::Regex;

use crate::store::PermissionDefinition;

/// What an operation does to a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Declare or delete it.
    Configure,
    /// Publish to it (an exchange) or bind it as a destination.
    Write,
    /// Consume, get or purge (a queue), or bind from it (an exchange).
    Read,
}

impl Operation {
    /// Its name in RabbitMQ's logs and definitions.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Configure => "configure",
            Operation::Write => "write",
            Operation::Read => "read",
        }
    }
}

/// What kind of resource is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// An exchange.
    Exchange,
    /// A queue.
    Queue,
}

impl ResourceKind {
    /// Its name in reply texts (`access to queue 'q' in vhost '/' …`).
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::Exchange => "exchange",
            ResourceKind::Queue => "queue",
        }
    }
}

/// One compiled pattern, with its source kept for listing and export.
#[derive(Clone, Debug)]
pub struct Pattern {
    source: String,
    regex: Regex,
}

impl Pattern {
    /// Compiles `source`; the reason it is not a regular expression otherwise.
    pub fn new(source: &str) -> Result<Pattern, String> {
        let effective = if source.is_empty() { "^$" } else { source };
        let regex = Regex::new(effective)
            .map_err(|e| format!("'{source}' is not a valid regular expression: {e}"))?;
        Ok(Pattern {
            source: source.to_owned(),
            regex,
        })
    }

    /// The pattern as it was given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether it allows `name`.
    pub fn allows(&self, name: &str) -> bool {
        self.regex.is_match(name)
    }
}

/// Configure, write and read patterns of one user in one vhost.
#[derive(Clone, Debug)]
pub struct Permission {
    /// Declare and delete.
    pub configure: Pattern,
    /// Publish and bind to.
    pub write: Pattern,
    /// Consume and bind from.
    pub read: Pattern,
}

impl Permission {
    /// Compiles three patterns; the first invalid one's reason otherwise.
    pub fn new(configure: &str, write: &str, read: &str) -> Result<Permission, String> {
        Ok(Permission {
            configure: Pattern::new(configure)?,
            write: Pattern::new(write)?,
            read: Pattern::new(read)?,
        })
    }

    /// Everything allowed (`.*` three times), what the default user gets on `/`.
    pub fn all() -> Permission {
        Permission::new(".*", ".*", ".*").unwrap_or_else(|_| unreachable!(".* compiles"))
    }

    /// Whether `operation` on the resource named `name` is allowed.
    pub fn allows(&self, operation: Operation, name: &str) -> bool {
        match operation {
            Operation::Configure => self.configure.allows(name),
            Operation::Write => self.write.allows(name),
            Operation::Read => self.read.allows(name),
        }
    }

    /// As stored, for `vhost` and `user`.
    pub fn definition(&self, vhost: &str, user: &str) -> PermissionDefinition {
        PermissionDefinition {
            vhost: vhost.to_owned(),
            user: user.to_owned(),
            configure: self.configure.source().to_owned(),
            write: self.write.source().to_owned(),
            read: self.read.source().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_anywhere_unless_anchored() {
        let p = Permission::new("^amq\\.gen", "logs", ".*").expect("valid");
        assert!(p.allows(Operation::Configure, "amq.gen-abc"));
        assert!(!p.allows(Operation::Configure, "my.amq.gen"));
        assert!(p.allows(Operation::Write, "app.logs.errors"), "unanchored");
        assert!(!p.allows(Operation::Write, "metrics"));
        assert!(p.allows(Operation::Read, ""));
    }

    #[test]
    fn the_empty_pattern_allows_nothing() {
        let p = Permission::new("", "", "").expect("valid");
        for name in ["q", "amq.default", "amq.gen-x"] {
            assert!(!p.allows(Operation::Configure, name), "{name}");
            assert!(!p.allows(Operation::Write, name), "{name}");
            assert!(!p.allows(Operation::Read, name), "{name}");
        }
    }

    #[test]
    fn an_invalid_pattern_is_refused_with_its_source() {
        let err = Permission::new(".*", "(", ".*").expect_err("unbalanced");
        assert!(err.contains("'('"), "{err}");
    }
}
