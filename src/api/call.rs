//! call: what a server-side grpcio call tells about its client.
//!
//! It owns one question the services ask while they wait: has the client ended the call
//! (cancelled it, or its deadline passed)? It must not answer calls or know any service.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Sink;
use grpcio::WriteFlags;

/// Whether the client has ended the call (cancelled it, or its deadline passed) before we
/// answered; if not, `cx` is woken when it does. Only a streaming sink reports this.
pub(super) fn call_ended<T, S>(sink: &mut S, cx: &mut Context<'_>) -> bool
where
    S: Sink<(T, WriteFlags)> + Unpin,
{
    matches!(Pin::new(sink).poll_ready(cx), Poll::Ready(Err(_)))
}
