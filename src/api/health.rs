//! health: the gRPC health service, `grpc.health.v1.Health` (Check and Watch).
//!
//! It owns the answer to "can this node serve?": a node serves while its loop is closed (its
//! probes come back), because a GET or PUT on a broken loop cannot complete. It knows two
//! service names: "" (the server as a whole) and `elayday.Elayday`; both have that status.
//! It reads the loop status the processor publishes ([`crate::node::LoopStatus`]) and must not
//! touch the processor or the delay line itself: a health check never sends a command.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;

use futures_util::SinkExt;
use grpcio::{RpcStatus, RpcStatusCode, ServerStreamingSink, ServiceBuilder, WriteFlags};

use crate::node::LoopStatus;
use crate::proto::grpc::health::v1::{METHOD_HEALTH_CHECK, METHOD_HEALTH_WATCH};
use crate::proto::grpc::ELAYDAY_SERVICE;
use crate::proto::health::v1::health_check_response::ServingStatus;
use crate::proto::health::v1::{HealthCheckRequest, HealthCheckResponse};

use super::call::call_ended;

/// The health service, answering from `loop_status`.
pub fn service(loop_status: Arc<LoopStatus>) -> grpcio::Service {
    let for_check = loop_status.clone();
    ServiceBuilder::new()
        .add_unary_handler(
            &METHOD_HEALTH_CHECK,
            move |ctx, request: HealthCheckRequest, sink| {
                let answer = match serving_status(&for_check, &request.service) {
                    ServingStatus::SERVICE_UNKNOWN => sink.fail(RpcStatus::with_message(
                        RpcStatusCode::NOT_FOUND,
                        format!("unknown service '{}'", request.service),
                    )),
                    status => sink.success(response(status)),
                };
                ctx.spawn(async move {
                    if let Err(e) = answer.await {
                        log::debug!("health check: could not answer: {e}");
                    }
                });
            },
        )
        .add_server_streaming_handler(
            &METHOD_HEALTH_WATCH,
            move |ctx, request: HealthCheckRequest, sink| {
                ctx.spawn(watch(loop_status.clone(), request.service, sink));
            },
        )
        .build()
}

/// The status of `service` now; SERVICE_UNKNOWN for a name this server does not know.
fn serving_status(loop_status: &LoopStatus, service: &str) -> ServingStatus {
    if !service.is_empty() && service != ELAYDAY_SERVICE {
        ServingStatus::SERVICE_UNKNOWN
    } else if loop_status.is_closed() {
        ServingStatus::SERVING
    } else {
        ServingStatus::NOT_SERVING
    }
}

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status.into(),
        ..Default::default()
    }
}

/// Sends the status of `service` now and after every change, until the client cancels (or the
/// server stops). An unknown service gets SERVICE_UNKNOWN once, and the call stays open, as the
/// protocol asks.
async fn watch(
    loop_status: Arc<LoopStatus>,
    service: String,
    mut sink: ServerStreamingSink<HealthCheckResponse>,
) {
    let mut sent = None;
    loop {
        let next = poll_fn(|cx| {
            // Ask to be woken before reading, so that no change slips in between.
            loop_status.watch(cx.waker());
            let status = serving_status(&loop_status, &service);
            if sent != Some(status) {
                return Poll::Ready(Some(status));
            }
            if call_ended(&mut sink, cx) {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await;
        let Some(status) = next else {
            log::debug!("health watch of '{service}' ended by the client");
            return;
        };
        if let Err(e) = sink.send((response(status), WriteFlags::default())).await {
            log::debug!("health watch of '{service}': could not send: {e}");
            return;
        }
        sent = Some(status);
    }
}
