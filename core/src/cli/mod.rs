//! What only the `warren` binary needs: the clients of a running broker's HTTP interfaces.

pub mod scheduled;
