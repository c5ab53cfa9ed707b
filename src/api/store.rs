//! store: the key-value service, `elayday.Elayday` (PutValue, GetValue, DeleteValue, GetStats),
//! on grpcio's completion-queue threads.
//!
//! It turns each call into a [`Command`] for the processor, then parks the call's task in the
//! [`crate::pending`] table until the answer is there. No grpcio thread ever blocks waiting for
//! the delay line, so thousands of GETs can wait at once. Each method is registered as a duplex
//! stream carrying one request and one response — the same bytes on the wire as a unary call —
//! because only grpcio's streaming sinks report a client's cancellation or an expired deadline
//! while the handler waits; the table slot and the processor's state for the request are freed
//! at that moment. It must not hold protocol state: validation of inputs, then messages in and
//! out.

use std::future::poll_fn;
use std::task::Poll;

use futures_util::{SinkExt, StreamExt};
use grpcio::{
    DuplexSink, Method, RequestStream, RpcStatus, RpcStatusCode, ServiceBuilder, WriteFlags,
};

use crate::node::{Answer, Command, Failure, FailureKind, NodeHandle, RequestId, Stats};
use crate::proto::elayday::*;
use crate::proto::grpc::*;

use super::call::call_ended;

/// The `elayday.Elayday` service in front of `node`.
pub fn service(node: NodeHandle) -> grpcio::Service {
    let builder = ServiceBuilder::new();
    let builder = add(
        builder,
        &METHOD_ELAYDAY_PUT_VALUE,
        node.clone(),
        |node, id, req: PutValueRequest| {
            check_key(node, &req.key)?;
            if req.value.len() as u64 > node.max_value_size {
                return Err(RpcStatus::with_message(
                    RpcStatusCode::INVALID_ARGUMENT,
                    format!(
                        "the value is {} bytes; this node's --max-value-size is {}",
                        req.value.len(),
                        node.max_value_size
                    ),
                ));
            }
            Ok(Command::Put {
                id,
                key: req.key.into_bytes(),
                value: req.value,
            })
        },
        |answer| match answer {
            Answer::Done => Some(PutValueResponse::new()),
            _ => None,
        },
    );
    let builder = add(
        builder,
        &METHOD_ELAYDAY_GET_VALUE,
        node.clone(),
        |node, id, req: GetValueRequest| {
            check_key(node, &req.key)?;
            Ok(Command::Get {
                id,
                key: req.key.into_bytes(),
            })
        },
        |answer| match answer {
            Answer::Value(value) => Some(GetValueResponse {
                value,
                ..Default::default()
            }),
            _ => None,
        },
    );
    let builder = add(
        builder,
        &METHOD_ELAYDAY_DELETE_VALUE,
        node.clone(),
        |node, id, req: DeleteValueRequest| {
            check_key(node, &req.key)?;
            Ok(Command::Delete {
                id,
                key: req.key.into_bytes(),
            })
        },
        |answer| match answer {
            Answer::Done => Some(DeleteValueResponse::new()),
            _ => None,
        },
    );
    let builder = add(
        builder,
        &METHOD_ELAYDAY_GET_STATS,
        node,
        |_, id, _: GetStatsRequest| Ok(Command::Stats { id }),
        |answer| match answer {
            Answer::Stats(stats) => Some(stats_response(&stats)),
            _ => None,
        },
    );
    builder.build()
}

fn check_key(node: &NodeHandle, key: &str) -> Result<(), RpcStatus> {
    let message = if key.is_empty() {
        "the key must not be empty".to_string()
    } else if key.len() > node.max_key_len {
        format!(
            "the key is {} bytes; the limit is {} bytes",
            key.len(),
            node.max_key_len
        )
    } else {
        return Ok(());
    };
    Err(RpcStatus::with_message(
        RpcStatusCode::INVALID_ARGUMENT,
        message,
    ))
}

/// Registers one method: `command` validates the request and turns it into a command,
/// `response` turns the processor's answer into the response message.
fn add<Req, Resp>(
    builder: ServiceBuilder,
    method: &Method<Req, Resp>,
    node: NodeHandle,
    command: fn(&NodeHandle, RequestId, Req) -> Result<Command, RpcStatus>,
    response: fn(Answer) -> Option<Resp>,
) -> ServiceBuilder
where
    Req: Send + 'static,
    Resp: Send + 'static,
{
    let name = method.name;
    builder.add_duplex_streaming_handler(method, move |ctx, requests, sink| {
        ctx.spawn(serve(node.clone(), name, requests, sink, command, response));
    })
}

async fn serve<Req, Resp>(
    node: NodeHandle,
    method: &'static str,
    mut requests: RequestStream<Req>,
    mut sink: DuplexSink<Resp>,
    command: fn(&NodeHandle, RequestId, Req) -> Result<Command, RpcStatus>,
    response: fn(Answer) -> Option<Resp>,
) {
    let request = match requests.next().await {
        Some(Ok(request)) => request,
        Some(Err(e)) => {
            log::debug!("{method}: cannot read the request: {e}");
            return;
        }
        None => {
            let status = RpcStatus::with_message(
                RpcStatusCode::INVALID_ARGUMENT,
                "no request message".to_string(),
            );
            let _ = sink.fail(status).await;
            return;
        }
    };
    let id = match node.pending.register() {
        Ok(id) => id,
        Err(full) => {
            let status = RpcStatus::with_message(
                RpcStatusCode::RESOURCE_EXHAUSTED,
                Failure::too_many_requests(full.capacity).message,
            );
            let _ = sink.fail(status).await;
            return;
        }
    };
    let command = match command(&node, id, request) {
        Ok(command) => command,
        Err(status) => {
            node.pending.forget(id);
            let _ = sink.fail(status).await;
            return;
        }
    };
    if node.commands.send(command).is_err() {
        node.pending.forget(id);
        let status = RpcStatus::with_message(
            RpcStatusCode::UNAVAILABLE,
            "the node is shutting down".to_string(),
        );
        let _ = sink.fail(status).await;
        return;
    }
    // Wait for the answer, or for the call to end without us (cancelled, deadline passed).
    let answer = poll_fn(|cx| {
        if let Some(answer) = node.pending.take_or_park(id, cx.waker()) {
            return Poll::Ready(Some(answer));
        }
        if call_ended(&mut sink, cx) {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await;
    let Some(answer) = answer else {
        log::debug!("{method}: request {id} cancelled by the client");
        node.pending.forget(id);
        let _ = node.commands.send(Command::Cancel { id });
        return;
    };
    let result = match answer {
        Answer::Failed(failure) => {
            Err(RpcStatus::with_message(code(failure.kind), failure.message))
        }
        answer => response(answer).ok_or_else(|| {
            RpcStatus::with_message(
                RpcStatusCode::INTERNAL,
                "unexpected answer from the processor".to_string(),
            )
        }),
    };
    let sent = match result {
        Ok(message) => match sink.send((message, WriteFlags::default())).await {
            Ok(()) => sink.close().await,
            Err(e) => Err(e),
        },
        Err(status) => sink.fail(status).await,
    };
    if let Err(e) = sent {
        log::debug!("{method}: could not answer request {id}: {e}");
    }
}

fn code(kind: FailureKind) -> RpcStatusCode {
    match kind {
        FailureKind::NotFound => RpcStatusCode::NOT_FOUND,
        FailureKind::Unavailable => RpcStatusCode::UNAVAILABLE,
        FailureKind::InvalidArgument => RpcStatusCode::INVALID_ARGUMENT,
        FailureKind::ResourceExhausted => RpcStatusCode::RESOURCE_EXHAUSTED,
        FailureKind::DataLoss => RpcStatusCode::DATA_LOSS,
    }
}

fn stats_response(stats: &Stats) -> GetStatsResponse {
    let us = |d: Option<std::time::Duration>| d.map_or(0, |d| d.as_micros() as u64);
    GetStatsResponse {
        loop_closed: stats.loop_closed,
        loop_period_last_us: us(stats.period_last),
        loop_period_min_us: us(stats.period_min),
        loop_period_max_us: us(stats.period_max),
        circulating_datagrams: stats.circulating_datagrams,
        circulating_bytes: stats.circulating_bytes,
        circulating_values: stats.circulating_values,
        datagrams_received: stats.received,
        datagrams_forwarded: stats.forwarded,
        bytes_forwarded: stats.forwarded_bytes,
        datagrams_dropped: stats
            .dropped
            .iter()
            .map(|&(k, v)| (k.to_string(), v))
            .collect(),
        uptime_seconds: stats.uptime.as_secs(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        node_id: stats.node_id,
        pending_requests: stats.pending_requests,
        refused: stats
            .refused
            .iter()
            .map(|&(k, v)| (k.to_string(), v))
            .collect(),
        records: stats.records,
        reassembly_bytes: stats.reassembly_bytes,
        write_backlog_bytes: stats.write_backlog_bytes,
        datagrams_repaired: stats.repair.repaired,
        stripes_unrecoverable: stats.repair.unrecoverable,
        repair_bytes: stats.repair.held,
        ..Default::default()
    }
}
