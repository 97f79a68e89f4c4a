//! What only the `warren` binary needs: the client of a running broker's management HTTP
//! API (`warren ctl`).

pub mod ctl;
