//! api: what a node serves to the outside: the gRPC server with its three services, and the
//! Prometheus endpoint.
//!
//! - `call.rs`: whether a client has ended a call (shared by the streaming handlers).
//! - `store.rs`: `elayday.Elayday`, the key-value service.
//! - `health.rs`: `grpc.health.v1.Health`.
//! - `reflection.rs`: gRPC server reflection, v1 and v1alpha.
//! - `server.rs`: the grpcio server that carries the three services ([`Api`]).
//! - `metrics.rs`: the Prometheus endpoint, plain HTTP on its own thread (no gRPC).
//!
//! The services depend on `call.rs` and nothing else here, and none imports another; only
//! `server.rs` knows them all. This file only names the parts. Nothing here holds protocol
//! state: every figure and answer comes from the processor through [`crate::node::NodeHandle`].
//!
//! Everything gRPC is behind the `grpc` feature (on by default); `metrics.rs` is not.

#[cfg(feature = "grpc")]
mod call;
#[cfg(feature = "grpc")]
pub mod health;
pub mod metrics;
#[cfg(feature = "grpc")]
pub mod reflection;
#[cfg(feature = "grpc")]
mod server;
#[cfg(feature = "grpc")]
pub mod store;

#[cfg(feature = "grpc")]
pub use server::Api;
