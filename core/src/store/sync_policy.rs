//! When a disk store makes its writes durable: after every write (grouped), or on a timer.

use std::time::Duration;

/// When a disk store calls the file system's sync for what it has written. Either way the
/// sync runs on the store's own writer thread, never on the caller's, and one sync covers
/// every write made since the last (group commit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncPolicy {
    /// A write's mark is durable once a sync after it has returned: nothing confirmed is
    /// lost, even on power loss.
    #[default]
    Always,
    /// A write's mark counts as durable once written (to the OS), and the store syncs every
    /// `d`: on an OS crash or power loss, confirmed writes of the last `d` can be lost; a
    /// process crash loses nothing written.
    Interval(Duration),
}
