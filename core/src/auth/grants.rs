//! One connection's permission checks, cached: a check that passed is remembered until users
//! or permissions change anywhere on the node (the [`Auth`] generation moves), so the publish
//! path pays an atomic load and a short scan of names — no regular expression — per message.
//!
//! The cache holds the last [`CAPACITY`] resources that passed, newest first; a refusal is not
//! cached (it closes the channel anyway).

use std::sync::Arc;

use super::{Auth, Operation, Permission, ResourceKind};
use crate::error::AmqpError;

/// How many passed checks are remembered (RabbitMQ's channel keeps 12).
const CAPACITY: usize = 16;

/// The name the default exchange is checked under, as RabbitMQ does.
const DEFAULT_EXCHANGE: &str = "amq.default";

/// What one user may do in one vhost, with the checks that passed.
#[derive(Debug)]
pub struct Grants {
    user: Arc<str>,
    vhost: Arc<str>,
    generation: u64,
    permission: Option<Arc<Permission>>,
    passed: Vec<(ResourceKind, Operation, Box<str>)>,
}

impl Grants {
    /// `user`'s grants in `vhost`, as `auth` has them now.
    pub fn new(auth: &Auth, vhost: &str, user: &str) -> Grants {
        Grants {
            user: user.into(),
            vhost: vhost.into(),
            generation: auth.generation(),
            permission: auth.permission(vhost, user),
            passed: Vec::with_capacity(CAPACITY),
        }
    }

    /// The user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Whether the user has any permissions in the vhost.
    pub fn has_access(&self) -> bool {
        self.permission.is_some()
    }

    /// Checks that the user may do `operation` on the `kind` named `name` (an exchange named
    /// `""` is the default exchange, checked as `amq.default`); 403 with RabbitMQ's text if
    /// not.
    pub fn check(
        &mut self,
        auth: &Auth,
        kind: ResourceKind,
        operation: Operation,
        name: &str,
    ) -> Result<(), AmqpError> {
        let name = if kind == ResourceKind::Exchange && name.is_empty() {
            DEFAULT_EXCHANGE
        } else {
            name
        };
        let now = auth.generation();
        if now != self.generation {
            self.generation = now;
            self.permission = auth.permission(&self.vhost, &self.user);
            self.passed.clear();
        } else if self
            .passed
            .iter()
            .any(|(k, o, n)| *k == kind && *o == operation && **n == *name)
        {
            return Ok(());
        }
        let allowed = self
            .permission
            .as_ref()
            .is_some_and(|p| p.allows(operation, name));
        if !allowed {
            return Err(AmqpError::access_refused(format!(
                "access to {} '{name}' in vhost '{}' refused for user '{}'",
                kind.name(),
                self.vhost,
                self.user
            )));
        }
        if self.passed.len() == CAPACITY {
            self.passed.pop();
        }
        self.passed.insert(0, (kind, operation, name.into()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::User;
    use crate::store::memory::MemoryStore;

    fn auth() -> Auth {
        let auth = Auth::new(Arc::new(MemoryStore::default()), Vec::new());
        auth.put_user(User::new("bob", "pw", Vec::new()))
            .expect("user");
        auth
    }

    #[test]
    fn checks_follow_the_patterns_and_name_the_resource_when_refused() {
        let auth = auth();
        auth.set_permission(
            "/",
            "bob",
            Permission::new("^bob\\.", "amq\\.default|logs", "^bob\\.").expect("valid"),
        )
        .expect("set");
        let mut grants = Grants::new(&auth, "/", "bob");
        grants
            .check(&auth, ResourceKind::Queue, Operation::Configure, "bob.q")
            .expect("allowed");
        grants
            .check(&auth, ResourceKind::Exchange, Operation::Write, "")
            .expect("the default exchange is amq.default");
        let refused = grants
            .check(&auth, ResourceKind::Exchange, Operation::Configure, "")
            .expect_err("not configurable");
        assert_eq!(
            refused.reply_text(),
            "ACCESS_REFUSED - access to exchange 'amq.default' in vhost '/' refused for user 'bob'"
        );
        assert_eq!(refused.code, crate::protocol::ReplyCode::AccessRefused);
    }

    #[test]
    fn a_change_of_permissions_reaches_a_cached_check() {
        let auth = auth();
        auth.set_permission("/", "bob", Permission::all())
            .expect("set");
        let mut grants = Grants::new(&auth, "/", "bob");
        grants
            .check(&auth, ResourceKind::Exchange, Operation::Write, "x")
            .expect("allowed, and cached");
        auth.clear_permission("/", "bob").expect("cleared");
        assert!(
            grants
                .check(&auth, ResourceKind::Exchange, Operation::Write, "x")
                .is_err(),
            "the cache is dropped when permissions change"
        );
    }

    #[test]
    fn no_permissions_means_no_access() {
        let auth = auth();
        let mut grants = Grants::new(&auth, "/", "bob");
        assert!(!grants.has_access());
        assert!(
            grants
                .check(&auth, ResourceKind::Queue, Operation::Read, "q")
                .is_err()
        );
    }
}
