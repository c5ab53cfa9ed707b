//! daemon: what makes the `elayday` process a well-behaved daemon, whatever role it plays.
//!
//! - `shutdown.rs`: the [`Shutdown`] flag every long-running loop polls.
//! - `roles.rs`: [`spawn_role`], the supervisor of role threads (a dead thread ends the
//!   process), and the one-line panic hook.
//! - `signals.rs`: SIGINT and SIGTERM set the flag.
//! - `notify.rs`: readiness and stopping messages to systemd (`sd_notify`).
//!
//! Each file depends only on the ones listed before it; this file only names them. Nothing
//! here knows the protocol, the API or the command line.

pub mod notify;
pub mod roles;
pub mod shutdown;
pub mod signals;

pub use roles::spawn_role;
pub use shutdown::Shutdown;
