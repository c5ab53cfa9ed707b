//! reflection: gRPC server reflection, `grpc.reflection.v1.ServerReflection` and
//! `grpc.reflection.v1alpha.ServerReflection`, so that grpcurl and other tools can list and call
//! the API with no .proto file at hand.
//!
//! It owns a catalog built once from the file descriptors protobuf-codegen embeds in the
//! generated code (`file_descriptor()` of each module of [`crate::proto`]): the files by name,
//! the fully qualified symbols they declare, and the services they define. Each request on a
//! reflection stream gets one response, in order, until the client half-closes. It must not
//! know anything about the store: it describes the API, and the services next to it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use grpcio::{
    DuplexSink, Marshaller, Method, MethodType, RequestStream, RpcStatusCode, ServiceBuilder,
    WriteFlags,
};
use protobuf::descriptor::{DescriptorProto, EnumDescriptorProto};
use protobuf::reflect::FileDescriptor;
use protobuf::Message;

use crate::proto::grpc::reflection::{v1 as v1_grpc, v1alpha as v1alpha_grpc};
use crate::proto::reflection::v1::server_reflection_request::Message_request as MessageRequest;
use crate::proto::reflection::v1::server_reflection_response::Message_response as MessageResponse;
use crate::proto::reflection::v1::{
    ErrorResponse, ExtensionNumberResponse, FileDescriptorResponse, ListServiceResponse,
    ServerReflectionRequest, ServerReflectionResponse, ServiceResponse,
};

/// v1alpha has the same messages as v1 under another package name: the same bytes on the wire.
/// Its calls are decoded with the v1 types, so one handler serves both versions.
const METHOD_V1ALPHA_SERVER_REFLECTION_INFO: Method<
    ServerReflectionRequest,
    ServerReflectionResponse,
> = Method {
    ty: MethodType::Duplex,
    name: v1alpha_grpc::METHOD_SERVER_REFLECTION_SERVER_REFLECTION_INFO.name,
    req_mar: Marshaller {
        ser: grpcio::pb_ser,
        de: grpcio::pb_de,
    },
    resp_mar: Marshaller {
        ser: grpcio::pb_ser,
        de: grpcio::pb_de,
    },
};

/// The reflection service, both versions.
pub fn service() -> grpcio::Service {
    // Every file build.rs compiles: the API and the protocols served next to it.
    let catalog = Arc::new(Catalog::new(&crate::proto::file_descriptors()));
    let for_v1alpha = catalog.clone();
    ServiceBuilder::new()
        .add_duplex_streaming_handler(
            &v1_grpc::METHOD_SERVER_REFLECTION_SERVER_REFLECTION_INFO,
            move |ctx, requests, sink| ctx.spawn(serve(catalog.clone(), requests, sink)),
        )
        .add_duplex_streaming_handler(
            &METHOD_V1ALPHA_SERVER_REFLECTION_INFO,
            move |ctx, requests, sink| ctx.spawn(serve(for_v1alpha.clone(), requests, sink)),
        )
        .build()
}

async fn serve(
    catalog: Arc<Catalog>,
    mut requests: RequestStream<ServerReflectionRequest>,
    mut sink: DuplexSink<ServerReflectionResponse>,
) {
    while let Some(request) = requests.next().await {
        let request = match request {
            Ok(request) => request,
            Err(e) => {
                log::debug!("reflection: the stream ended: {e}");
                return;
            }
        };
        let response = catalog.answer(request);
        if let Err(e) = sink.send((response, WriteFlags::default())).await {
            log::debug!("reflection: could not answer: {e}");
            return;
        }
    }
    if let Err(e) = sink.close().await {
        log::debug!("reflection: could not end the stream: {e}");
    }
}

/// What the server can describe.
struct Catalog {
    /// Every file by name, the served ones and all they depend on.
    files: HashMap<String, FileDescriptor>,
    /// Fully qualified symbol (no leading dot) -> name of the file that declares it.
    symbols: HashMap<String, String>,
    /// Fully qualified message type names.
    messages: HashSet<String>,
    /// Fully qualified names of the services the server offers.
    services: Vec<String>,
}

impl Catalog {
    fn new(served: &[&FileDescriptor]) -> Catalog {
        let mut catalog = Catalog {
            files: HashMap::new(),
            symbols: HashMap::new(),
            messages: HashSet::new(),
            services: Vec::new(),
        };
        for file in served {
            for service in &file.proto().service {
                catalog
                    .services
                    .push(qualify(file.package(), service.name()));
            }
            catalog.add_file(file);
        }
        catalog
    }

    fn add_file(&mut self, file: &FileDescriptor) {
        if self.files.contains_key(file.name()) {
            return;
        }
        self.files.insert(file.name().to_string(), file.clone());
        let proto = file.proto();
        let name = file.name();
        let package = proto.package();
        for message in &proto.message_type {
            self.add_message(name, package, message);
        }
        for enumeration in &proto.enum_type {
            self.add_enum(name, package, enumeration);
        }
        for service in &proto.service {
            let service_name = qualify(package, service.name());
            for method in &service.method {
                self.add_symbol(name, qualify(&service_name, method.name()));
            }
            self.add_symbol(name, service_name);
        }
        for extension in &proto.extension {
            self.add_symbol(name, qualify(package, extension.name()));
        }
        for dependency in file.deps() {
            self.add_file(dependency);
        }
    }

    fn add_message(&mut self, file: &str, scope: &str, message: &DescriptorProto) {
        let message_name = qualify(scope, message.name());
        for field in message.field.iter().chain(&message.extension) {
            self.add_symbol(file, qualify(&message_name, field.name()));
        }
        for oneof in &message.oneof_decl {
            self.add_symbol(file, qualify(&message_name, oneof.name()));
        }
        for nested in &message.nested_type {
            self.add_message(file, &message_name, nested);
        }
        for enumeration in &message.enum_type {
            self.add_enum(file, &message_name, enumeration);
        }
        self.messages.insert(message_name.clone());
        self.add_symbol(file, message_name);
    }

    /// An enum and its values; the values live in the enum's enclosing scope, as in C++.
    fn add_enum(&mut self, file: &str, scope: &str, enumeration: &EnumDescriptorProto) {
        for value in &enumeration.value {
            self.add_symbol(file, qualify(scope, value.name()));
        }
        self.add_symbol(file, qualify(scope, enumeration.name()));
    }

    fn add_symbol(&mut self, file: &str, symbol: String) {
        self.symbols
            .entry(symbol)
            .or_insert_with(|| file.to_string());
    }

    fn answer(&self, request: ServerReflectionRequest) -> ServerReflectionResponse {
        let message_response = match &request.message_request {
            Some(MessageRequest::ListServices(_)) => {
                MessageResponse::ListServicesResponse(ListServiceResponse {
                    service: self
                        .services
                        .iter()
                        .map(|name| ServiceResponse {
                            name: name.clone(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
            }
            Some(MessageRequest::FileByFilename(name)) => match self.files.get(name.as_str()) {
                Some(file) => self.file_with_dependencies(file),
                None => not_found(format!("no file named '{name}'")),
            },
            Some(MessageRequest::FileContainingSymbol(symbol)) => {
                let symbol = symbol.strip_prefix('.').unwrap_or(symbol);
                match self.symbols.get(symbol) {
                    Some(name) => self.file_with_dependencies(&self.files[name]),
                    None => not_found(format!("no symbol named '{symbol}'")),
                }
            }
            Some(MessageRequest::FileContainingExtension(extension)) => {
                let message = extension.containing_type.as_str();
                let message = message.strip_prefix('.').unwrap_or(message);
                if self.messages.contains(message) {
                    not_found(format!(
                        "message type '{message}' has no extension number {}",
                        extension.extension_number
                    ))
                } else {
                    not_found(format!("no message type named '{message}'"))
                }
            }
            Some(MessageRequest::AllExtensionNumbersOfType(message)) => {
                let message = message.strip_prefix('.').unwrap_or(message);
                if self.messages.contains(message) {
                    // No file here declares extensions.
                    MessageResponse::AllExtensionNumbersResponse(ExtensionNumberResponse {
                        base_type_name: message.to_string(),
                        extension_number: Vec::new(),
                        ..Default::default()
                    })
                } else {
                    not_found(format!("no message type named '{message}'"))
                }
            }
            None => error(
                RpcStatusCode::INVALID_ARGUMENT,
                "the request asks nothing (no message_request field is set)".to_string(),
            ),
        };
        ServerReflectionResponse {
            valid_host: request.host.clone(),
            original_request: Some(request).into(),
            message_response: Some(message_response),
            ..Default::default()
        }
    }

    /// `file` and, after it, every file it depends on, directly or not: a client needs them all
    /// to make sense of it.
    fn file_with_dependencies(&self, file: &FileDescriptor) -> MessageResponse {
        let mut names = HashSet::new();
        let mut serialized = Vec::new();
        let mut todo = vec![file];
        while let Some(file) = todo.pop() {
            if !names.insert(file.name()) {
                continue;
            }
            match file.proto().write_to_bytes() {
                Ok(bytes) => serialized.push(bytes),
                Err(e) => {
                    return error(
                        RpcStatusCode::INTERNAL,
                        format!("cannot serialize the descriptor of '{}': {e}", file.name()),
                    )
                }
            }
            todo.extend(file.deps().iter().rev());
        }
        MessageResponse::FileDescriptorResponse(FileDescriptorResponse {
            file_descriptor_proto: serialized,
            ..Default::default()
        })
    }
}

/// `("elayday", "Elayday")` -> `elayday.Elayday`; no dot for the empty package.
fn qualify(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_string()
    } else {
        format!("{scope}.{name}")
    }
}

fn not_found(message: String) -> MessageResponse {
    error(RpcStatusCode::NOT_FOUND, message)
}

fn error(code: RpcStatusCode, message: String) -> MessageResponse {
    MessageResponse::ErrorResponse(ErrorResponse {
        error_code: code.into(),
        error_message: message,
        ..Default::default()
    })
}
