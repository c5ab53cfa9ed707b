//! Generates Rust code for the gRPC API from `proto/`.
//!
//! Messages come from protobuf-codegen 3 (pure Rust parser: no `protoc` needed). grpcio's own
//! code generator only speaks protobuf 2, so the method descriptors and client stubs for
//! grpcio are written here from the parsed service definitions: one `Method` constant per RPC
//! and a blocking client struct per service. Server-side registration lives in `src/rpc.rs`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const PROTOS: &[&str] = &["proto/elayday.proto"];

fn main() {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));

    protobuf_codegen::Codegen::new()
        .pure()
        .include("proto")
        .inputs(PROTOS)
        .cargo_out_dir("protos")
        .run_from_script();

    let parsed = protobuf_parse::Parser::new()
        .pure()
        .include("proto")
        .inputs(PROTOS)
        .parse_and_typecheck()
        .expect("proto files parse");
    let mut grpc = String::new();
    for file in &parsed.file_descriptors {
        for service in &file.service {
            write_service(&mut grpc, file.package(), service);
        }
    }
    write_if_changed(&out_dir.join("grpc.rs"), &grpc);
}

fn write_service(
    out: &mut String,
    package: &str,
    service: &protobuf::descriptor::ServiceDescriptorProto,
) {
    let service_name = service.name();
    let full_service = format!("{package}.{service_name}");
    let upper = snake(service_name).to_uppercase();
    let client = format!("{service_name}Client");
    writeln!(
        out,
        "/// Fully qualified name of the `{full_service}` service."
    )
    .unwrap();
    writeln!(out, "pub const {upper}_SERVICE: &str = \"{full_service}\";").unwrap();
    let mut client_methods = String::new();
    for method in &service.method {
        let name = method.name();
        let fn_name = snake(name);
        let constant = format!("METHOD_{upper}_{}", fn_name.to_uppercase());
        let input = rust_type(package, method.input_type());
        let output = rust_type(package, method.output_type());
        let kind = match (method.client_streaming(), method.server_streaming()) {
            (false, false) => "Unary",
            (true, false) => "ClientStreaming",
            (false, true) => "ServerStreaming",
            (true, true) => "Duplex",
        };
        writeln!(
            out,
            "/// `/{full_service}/{name}`.\n\
             pub const {constant}: ::grpcio::Method<{input}, {output}> = ::grpcio::Method {{\n    \
                 ty: ::grpcio::MethodType::{kind},\n    \
                 name: \"/{full_service}/{name}\",\n    \
                 req_mar: ::grpcio::Marshaller {{ ser: ::grpcio::pb_ser, de: ::grpcio::pb_de }},\n    \
                 resp_mar: ::grpcio::Marshaller {{ ser: ::grpcio::pb_ser, de: ::grpcio::pb_de }},\n\
             }};"
        )
        .unwrap();
        if kind == "Unary" {
            writeln!(
                client_methods,
                "    /// Calls `{name}` and waits for the answer.\n    \
                 pub fn {fn_name}(&self, req: &{input}) -> ::grpcio::Result<{output}> {{\n        \
                     self.{fn_name}_opt(req, ::grpcio::CallOption::default())\n    \
                 }}\n\n    \
                 /// Calls `{name}` with call options (deadline, headers) and waits for the answer.\n    \
                 pub fn {fn_name}_opt(&self, req: &{input}, opt: ::grpcio::CallOption) -> ::grpcio::Result<{output}> {{\n        \
                     self.client.unary_call(&{constant}, req, opt)\n    \
                 }}\n\n    \
                 /// Starts `{name}` without waiting; the receiver resolves to the answer.\n    \
                 pub fn {fn_name}_async_opt(&self, req: &{input}, opt: ::grpcio::CallOption) -> ::grpcio::Result<::grpcio::ClientUnaryReceiver<{output}>> {{\n        \
                     self.client.unary_call_async(&{constant}, req, opt)\n    \
                 }}\n"
            )
            .unwrap();
        }
    }
    writeln!(
        out,
        "/// Blocking client for `{full_service}`.\n\
         #[derive(Clone)]\n\
         pub struct {client} {{\n    client: ::grpcio::Client,\n}}\n\n\
         impl {client} {{\n    \
             /// A client over an established channel.\n    \
             pub fn new(channel: ::grpcio::Channel) -> Self {{\n        \
                 {client} {{ client: ::grpcio::Client::new(channel) }}\n    \
             }}\n\n\
         {client_methods}}}\n"
    )
    .unwrap();
}

/// `.elayday.PutValueRequest` -> `crate::proto::elayday::PutValueRequest`.
fn rust_type(package: &str, proto_type: &str) -> String {
    let name = proto_type
        .strip_prefix(&format!(".{package}."))
        .unwrap_or_else(|| panic!("{proto_type} is not in package {package}"));
    format!("crate::proto::{}::{name}", package.replace('.', "_"))
}

/// `PutValue` -> `put_value`.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn write_if_changed(path: &Path, contents: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(contents) {
        std::fs::write(path, contents).expect("write generated code");
    }
}
