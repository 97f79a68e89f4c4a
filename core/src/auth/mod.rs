//! Who may connect and what they may do: users with their password hashes and tags,
//! permissions per user and vhost, and the checks AMQP operations make.
//!
//! - [`password`]: RabbitMQ's salted hashes (SHA-256, and SHA-512/MD5 read on import).
//! - [`user`]: a user and what its tags mean to the management API.
//! - [`permission`]: configure/write/read patterns with RabbitMQ's matching rules.
//! - [`grants`]: one channel's cache of checks that passed, so the publish path does not
//!   match a regular expression per message.
//!
//! [`Auth`] (this file) holds the users and permissions of the node. Both are definitions:
//! every change is written to the definition store and its [`SyncMark`] returned, so the
//! caller (the management API) answers once it is durable. Every change also bumps a
//! generation number, which is how [`grants::Grants`] learns that what it cached may be
//! stale (a permission narrowed or cleared takes effect on a channel's next operation).

pub mod grants;
pub mod password;
pub mod permission;
pub mod throttle;
pub mod user;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use rustc_hash::FxHashMap;

use crate::store::{Definition, DefinitionKey, DefinitionStore, StoreError, SyncMark};
pub use grants::Grants;
pub use password::{Hashing, PasswordHash};
pub use permission::{Operation, Permission, ResourceKind};
pub use user::User;

/// Why a login was refused. The client only hears RabbitMQ's 403 text; this is what the
/// log says, so an operator can tell a typo from a firewall.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoginRefused {
    /// No user has that name.
    #[error("user '{0}' does not exist")]
    UnknownUser(String),
    /// The password does not match (or the user has none).
    #[error("wrong password for user '{0}'")]
    WrongPassword(String),
    /// The user may only connect from a loopback address.
    #[error("user '{user}' can only connect via localhost, not from {peer}")]
    LoopbackOnly {
        /// The user.
        user: String,
        /// Where it came from.
        peer: IpAddr,
    },
}

/// Why a change to users or permissions was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A permission pattern is not a regular expression.
    #[error("{0}")]
    InvalidPattern(String),
    /// No such user.
    #[error("no user '{0}'")]
    NoUser(String),
    /// The definition store refused the write.
    #[error("{0}")]
    Store(#[from] StoreError),
}

#[derive(Debug, Default)]
struct State {
    users: FxHashMap<String, Arc<User>>,
    /// By (vhost, user).
    permissions: FxHashMap<(String, String), Arc<Permission>>,
}

/// The node's users and permissions.
#[derive(Debug)]
pub struct Auth {
    state: RwLock<State>,
    generation: AtomicU64,
    /// Users who may only log in from loopback addresses (RabbitMQ's `loopback_users`).
    loopback_users: Vec<String>,
    definitions: Arc<dyn DefinitionStore>,
    /// Failed AMQP logins by source address, to slow password guessing.
    throttle: throttle::LoginThrottle,
}

impl Auth {
    /// No users yet, writing changes to `definitions`.
    pub fn new(definitions: Arc<dyn DefinitionStore>, loopback_users: Vec<String>) -> Auth {
        Auth {
            state: RwLock::default(),
            generation: AtomicU64::new(1),
            loopback_users,
            definitions,
            throttle: throttle::LoginThrottle::default(),
        }
    }

    /// Bumped by every change; a cached check made under an older one is re-made.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Checks `password` for `name` connecting from `peer`.
    pub fn login(
        &self,
        name: &str,
        password: &[u8],
        peer: IpAddr,
    ) -> Result<Arc<User>, LoginRefused> {
        let user = self
            .user(name)
            .ok_or_else(|| LoginRefused::UnknownUser(name.to_owned()))?;
        if !user.password.verify(password) {
            return Err(LoginRefused::WrongPassword(name.to_owned()));
        }
        self.check_loopback(name, peer)?;
        Ok(user)
    }

    /// Logs `name` in without a password, connecting from `peer`: the EXTERNAL mechanism,
    /// where the TLS handshake has already proven who the client is (its certificate's CN).
    /// The user must exist and the loopback rule still applies.
    pub fn login_external(&self, name: &str, peer: IpAddr) -> Result<Arc<User>, LoginRefused> {
        let user = self
            .user(name)
            .ok_or_else(|| LoginRefused::UnknownUser(name.to_owned()))?;
        self.check_loopback(name, peer)?;
        Ok(user)
    }

    fn check_loopback(&self, name: &str, peer: IpAddr) -> Result<(), LoginRefused> {
        if self.is_loopback_only(name) && !peer.to_canonical().is_loopback() {
            return Err(LoginRefused::LoopbackOnly {
                user: name.to_owned(),
                peer,
            });
        }
        Ok(())
    }

    /// The record of failed logins by source address.
    pub fn throttle(&self) -> &throttle::LoginThrottle {
        &self.throttle
    }

    /// Whether `name` may only connect from loopback addresses.
    pub fn is_loopback_only(&self, name: &str) -> bool {
        self.loopback_users.iter().any(|u| u == name)
    }

    /// The user named `name`.
    pub fn user(&self, name: &str) -> Option<Arc<User>> {
        self.state.read().users.get(name).cloned()
    }

    /// Every user, by name.
    pub fn users(&self) -> Vec<Arc<User>> {
        let mut all: Vec<_> = self.state.read().users.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Adds `user` or replaces the one with its name; durable at the mark.
    pub fn put_user(&self, user: User) -> Result<SyncMark, AuthError> {
        let mark = self.definitions.put(Definition::User(user.definition()))?;
        self.state
            .write()
            .users
            .insert(user.name.clone(), Arc::new(user));
        self.changed();
        Ok(mark)
    }

    /// Deletes user `name` and its permissions in every vhost; durable at the mark.
    pub fn delete_user(&self, name: &str) -> Result<SyncMark, AuthError> {
        if self.user(name).is_none() {
            return Err(AuthError::NoUser(name.to_owned()));
        }
        let vhosts: Vec<String> = self
            .state
            .read()
            .permissions
            .keys()
            .filter(|(_, u)| u == name)
            .map(|(v, _)| v.clone())
            .collect();
        let mut mark = SyncMark::default();
        for vhost in vhosts {
            mark = mark.max(self.clear_permission(&vhost, name)?);
        }
        mark = mark.max(
            self.definitions
                .delete(&DefinitionKey::User(name.to_owned()))?,
        );
        self.state.write().users.remove(name);
        self.changed();
        Ok(mark)
    }

    /// The permissions of `user` in `vhost`.
    pub fn permission(&self, vhost: &str, user: &str) -> Option<Arc<Permission>> {
        self.state
            .read()
            .permissions
            .get(&(vhost.to_owned(), user.to_owned()))
            .cloned()
    }

    /// Every permission as (vhost, user, patterns), sorted by vhost then user.
    pub fn permissions(&self) -> Vec<(String, String, Arc<Permission>)> {
        let mut all: Vec<_> = self
            .state
            .read()
            .permissions
            .iter()
            .map(|((v, u), p)| (v.clone(), u.clone(), p.clone()))
            .collect();
        all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        all
    }

    /// Sets what `user` may do in `vhost` (the caller has checked the vhost exists);
    /// durable at the mark.
    pub fn set_permission(
        &self,
        vhost: &str,
        user: &str,
        permission: Permission,
    ) -> Result<SyncMark, AuthError> {
        if self.user(user).is_none() {
            return Err(AuthError::NoUser(user.to_owned()));
        }
        let mark = self
            .definitions
            .put(Definition::Permission(permission.definition(vhost, user)))?;
        self.state
            .write()
            .permissions
            .insert((vhost.to_owned(), user.to_owned()), Arc::new(permission));
        self.changed();
        Ok(mark)
    }

    /// Removes what `user` may do in `vhost` (nothing if it had no permissions); durable at
    /// the mark.
    pub fn clear_permission(&self, vhost: &str, user: &str) -> Result<SyncMark, AuthError> {
        let mark = self.definitions.delete(&DefinitionKey::Permission(
            vhost.to_owned(),
            user.to_owned(),
        ))?;
        self.state
            .write()
            .permissions
            .remove(&(vhost.to_owned(), user.to_owned()));
        self.changed();
        Ok(mark)
    }

    /// Removes every permission in `vhost` (it is being deleted); durable at the mark.
    pub fn forget_vhost(&self, vhost: &str) -> Result<SyncMark, AuthError> {
        let users: Vec<String> = self
            .state
            .read()
            .permissions
            .keys()
            .filter(|(v, _)| v == vhost)
            .map(|(_, u)| u.clone())
            .collect();
        let mut mark = SyncMark::default();
        for user in users {
            mark = mark.max(self.clear_permission(vhost, &user)?);
        }
        Ok(mark)
    }

    /// Puts back a stored user (nothing written).
    pub fn restore_user(&self, user: User) {
        self.state
            .write()
            .users
            .insert(user.name.clone(), Arc::new(user));
        self.changed();
    }

    /// Puts back stored permissions (nothing written); a pattern that no longer compiles is
    /// the reason it was not restored.
    pub fn restore_permission(&self, d: &crate::store::PermissionDefinition) -> Result<(), String> {
        let permission = Permission::new(&d.configure, &d.write, &d.read)?;
        self.state
            .write()
            .permissions
            .insert((d.vhost.clone(), d.user.clone()), Arc::new(permission));
        self.changed();
        Ok(())
    }
}
