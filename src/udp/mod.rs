//! udp: batched datagram I/O (`recvmmsg`/`sendmmsg`, UDP GRO and GSO) and UDP socket setup.
//!
//! It owns the `mmsghdr`/`iovec`/`cmsg` plumbing, the [`Batch`] of datagram slots that threads
//! pass around, the splitting of coalesced receives (GRO) back into datagrams, the grouping of
//! same-size datagrams to one destination into segmented sends (GSO), and the kernel's drop
//! counter (`SO_RXQ_OVFL`). It must not interpret payloads, allocate on the hot path (everything
//! is sized once in the constructors), or log per datagram: it counts, and the roles decide what
//! to report.
//!
//! GRO and GSO are used when the kernel has them (Linux 5.0 and 4.18); otherwise, or when the
//! kernel refuses a segmented send, they are left off with one debug line. Either way callers
//! see the same datagrams, in the same order.
//!
//! The syscall structures live in boxed arrays owned by [`Receiver`] and [`Sender`]; the
//! pointers inside them are written right before each syscall and never read by Rust code
//! afterwards, so the owners stay movable and `Send`.
//!
//! Files, each depending only on the ones listed before it:
//! - `socket.rs`: binding, buffer sizes, socket options ([`bind`], [`SocketOptions`]).
//! - `batch.rs`: the [`Batch`] of datagram slots.
//! - `mmsg.rs`: the syscall arrays and the promise that makes their owners `Send`.
//! - `recv.rs`: the [`Receiver`] (`recvmmsg`, GRO, the kernel's drop counter).
//! - `send.rs`: the [`Sender`] (`sendmmsg`, GSO).
//!
//! This file only names the parts; nothing here is imported by them.

mod batch;
mod mmsg;
mod recv;
mod send;
mod socket;
#[cfg(test)]
mod tests;

pub use batch::{Batch, BATCH_SLOTS};
pub use recv::{Receiver, RecvReport};
pub use send::{sockaddr_bytes, Outgoing, SendReport, Sender};
pub use socket::{bind, bind_failed, BoundSocket, SocketOptions};
