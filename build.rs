//! Generates Rust code for the gRPC API from `proto/`.
//!
//! Messages come from protobuf-codegen 3 (pure Rust parser: no `protoc` needed). grpcio's own
//! code generator only speaks protobuf 2, so the method descriptors and client stubs for
//! grpcio are written here from the parsed service definitions: one `Method` constant per RPC
//! and a blocking client struct per service. Server-side registration lives in
//! `src/api/store.rs`, `src/api/health.rs` and `src/api/reflection.rs`. The stubs are written
//! whatever the features; `crate::proto::grpc`, which includes them, exists only with the `grpc`
//! feature.
//!
//! The messages of package `a.b` land in `crate::proto::a::b` and its stubs in
//! `crate::proto::grpc::a::b`, with a leading `grpc.` dropped: `grpc.reflection.v1` becomes
//! `crate::proto::reflection::v1`. The `elayday` stubs are also re-exported at the top of
//! `crate::proto::grpc`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const PROTOS: &[&str] = &[
    "proto/elayday.proto",
    "proto/grpc/health/v1/health.proto",
    "proto/grpc/reflection/v1/reflection.proto",
    "proto/grpc/reflection/v1alpha/reflection.proto",
];

/// Rust items (source text) by the module path they go in.
type Modules = BTreeMap<Vec<String>, String>;

fn main() {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));

    // protobuf-codegen names its output after the file's stem, and both reflection versions are
    // called `reflection.proto`: each file gets a run and a directory of its own, and the module
    // tree that places them (`protos/mod.rs`, included by `src/lib.rs`) is written here.
    let mut messages = Modules::new();
    let mut grpc = Modules::new();
    let mut descriptors = Vec::new();
    for proto in PROTOS {
        let parsed = protobuf_parse::Parser::new()
            .pure()
            .include("proto")
            .input(proto)
            .parse_and_typecheck()
            .expect("proto files parse");
        let relative = proto.strip_prefix("proto/").expect("protos live in proto/");
        let file = parsed
            .file_descriptors
            .iter()
            .find(|file| file.name() == relative)
            .expect("the parser describes its input");
        let module = rust_module(file.package());
        let dir = out_dir.join("protos").join(module.join("/"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("clear the output directory");
        }
        std::fs::create_dir_all(&dir).expect("create the output directory");
        protobuf_codegen::Codegen::new()
            .pure()
            .include("proto")
            .input(proto)
            .out_dir(&dir)
            .customize(protobuf_codegen::Customize::default().gen_mod_rs(false))
            .run_from_script();
        let generated = generated_file(&dir);
        descriptors.push(format!("self::{}::file_descriptor()", module.join("::")));
        let (leaf, parent) = module.split_last().expect("a package has a name");
        writeln!(
            messages.entry(parent.to_vec()).or_default(),
            "#[path = {:?}]\npub mod {leaf};",
            generated.to_str().expect("OUT_DIR is UTF-8")
        )
        .unwrap();
        for service in &file.service {
            write_service(
                grpc.entry(module.clone()).or_default(),
                file.package(),
                service,
            );
        }
    }
    // Every compiled file's descriptor, for server reflection: derived here, not kept by hand.
    writeln!(
        messages.entry(Vec::new()).or_default(),
        "/// The descriptor of every proto file compiled by `build.rs`.\n\
         pub fn file_descriptors() -> Vec<&'static ::protobuf::reflect::FileDescriptor> {{\n    \
             vec![{}]\n\
         }}",
        descriptors.join(", ")
    )
    .unwrap();
    write_if_changed(&out_dir.join("protos/mod.rs"), &render(&messages, &[]));
    let mut stubs = render(&grpc, &[]);
    stubs.push_str("pub use self::elayday::*;\n");
    write_if_changed(&out_dir.join("grpc.rs"), &stubs);
}

/// `grpc.reflection.v1` -> `["reflection", "v1"]`; `elayday` -> `["elayday"]`.
fn rust_module(package: &str) -> Vec<String> {
    let package = package.strip_prefix("grpc.").unwrap_or(package);
    assert!(!package.is_empty(), "every proto file needs a package");
    package.split('.').map(str::to_string).collect()
}

/// The one `.rs` file protobuf-codegen wrote in `dir`.
fn generated_file(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read the output directory")
        .map(|entry| entry.expect("read the output directory").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    assert_eq!(files.len(), 1, "one generated file in {}", dir.display());
    files.pop().unwrap()
}

/// The items at `path`, then each child module of `path` with its own items, nested.
fn render(modules: &Modules, path: &[String]) -> String {
    let mut out = modules.get(path).cloned().unwrap_or_default();
    let mut children: Vec<&String> = modules
        .keys()
        .filter(|key| key.len() > path.len() && key.starts_with(path))
        .map(|key| &key[path.len()])
        .collect();
    children.dedup();
    for child in children {
        let mut child_path = path.to_vec();
        child_path.push(child.clone());
        writeln!(
            out,
            "pub mod {child} {{\n{}}}",
            render(modules, &child_path)
        )
        .unwrap();
    }
    out
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
        match kind {
            "Unary" => writeln!(
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
            ),
            "ClientStreaming" => writeln!(
                client_methods,
                "    /// Starts `{name}`: requests go into the sender, the answer comes from the receiver.\n    \
                 pub fn {fn_name}(&self) -> ::grpcio::Result<(::grpcio::ClientCStreamSender<{input}>, ::grpcio::ClientCStreamReceiver<{output}>)> {{\n        \
                     self.{fn_name}_opt(::grpcio::CallOption::default())\n    \
                 }}\n\n    \
                 /// Starts `{name}` with call options (deadline, headers).\n    \
                 pub fn {fn_name}_opt(&self, opt: ::grpcio::CallOption) -> ::grpcio::Result<(::grpcio::ClientCStreamSender<{input}>, ::grpcio::ClientCStreamReceiver<{output}>)> {{\n        \
                     self.client.client_streaming(&{constant}, opt)\n    \
                 }}\n"
            ),
            "ServerStreaming" => writeln!(
                client_methods,
                "    /// Starts `{name}`; the receiver yields the answers.\n    \
                 pub fn {fn_name}(&self, req: &{input}) -> ::grpcio::Result<::grpcio::ClientSStreamReceiver<{output}>> {{\n        \
                     self.{fn_name}_opt(req, ::grpcio::CallOption::default())\n    \
                 }}\n\n    \
                 /// Starts `{name}` with call options (deadline, headers).\n    \
                 pub fn {fn_name}_opt(&self, req: &{input}, opt: ::grpcio::CallOption) -> ::grpcio::Result<::grpcio::ClientSStreamReceiver<{output}>> {{\n        \
                     self.client.server_streaming(&{constant}, req, opt)\n    \
                 }}\n"
            ),
            _ => writeln!(
                client_methods,
                "    /// Starts `{name}`: requests go into the sender, answers come from the receiver.\n    \
                 pub fn {fn_name}(&self) -> ::grpcio::Result<(::grpcio::ClientDuplexSender<{input}>, ::grpcio::ClientDuplexReceiver<{output}>)> {{\n        \
                     self.{fn_name}_opt(::grpcio::CallOption::default())\n    \
                 }}\n\n    \
                 /// Starts `{name}` with call options (deadline, headers).\n    \
                 pub fn {fn_name}_opt(&self, opt: ::grpcio::CallOption) -> ::grpcio::Result<(::grpcio::ClientDuplexSender<{input}>, ::grpcio::ClientDuplexReceiver<{output}>)> {{\n        \
                     self.client.duplex_streaming(&{constant}, opt)\n    \
                 }}\n"
            ),
        }
        .unwrap();
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
    assert!(
        !name.contains('.'),
        "{proto_type}: nested messages as RPC arguments are not supported"
    );
    format!("crate::proto::{}::{name}", rust_module(package).join("::"))
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
