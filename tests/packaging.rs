//! The installed files agree with the binary: every flag of `elayday server` and `elayday
//! reflector` has a commented example in its `/etc/default` file and an entry in the man page,
//! the examples are valid settings, and the units start the right role from the right file.
//! (`packaging/build-deb.sh` checks the package itself with lintian and systemd-analyze.)

mod common;

use std::ffi::OsString;

use elayday::cli::{
    self, Flag, Invocation, CLIENT_FLAGS, DEMO_FLAGS, REFLECTOR_FLAGS, SERVER_FLAGS,
};

fn read(relative: &str) -> String {
    common::repo_file(relative)
}

/// The example assignments of a shipped default file, uncommented: `#KEY=VALUE` lines.
fn examples(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.strip_prefix('#'))
        .filter_map(|line| line.split_once('='))
        .filter(|(key, _)| {
            !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

fn parse_with(command: &str, env: &[(String, String)]) -> Result<Invocation, cli::UsageError> {
    cli::parse([OsString::from(command)], |name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
}

fn check_default_file(file: &str, flags: &[Flag]) -> Vec<(String, String)> {
    let examples = examples(&read(file));
    for flag in flags {
        assert!(
            examples.iter().any(|(key, _)| key == flag.env),
            "{file} has no example line #{}=... for --{}",
            flag.env,
            flag.name
        );
    }
    assert!(
        examples.iter().any(|(key, _)| key == "RUST_LOG"),
        "{file} has no #RUST_LOG= example"
    );
    examples
}

#[test]
fn default_files_have_a_valid_example_of_every_flag() {
    let node = check_default_file("packaging/default/elayday", SERVER_FLAGS);
    match parse_with("server", &node) {
        Ok(Invocation::Server {
            node,
            grpc,
            metrics,
        }) => {
            assert_eq!(node.bind, "[::1]:24601".parse().unwrap());
            assert_eq!(node.destination, "[::1]:24602".parse().unwrap());
            assert_eq!(grpc, Some("[::1]:24603".parse().unwrap()));
            assert_eq!(metrics, Some("[::1]:24604".parse().unwrap()));
        }
        other => panic!("the node's examples do not parse: {other:?}"),
    }
    let reflector = check_default_file("packaging/default/elayday-reflector", REFLECTOR_FLAGS);
    match parse_with("reflector", &reflector) {
        Ok(Invocation::Reflector(config)) => {
            assert_eq!(config.bind, "[::1]:24602".parse().unwrap())
        }
        other => panic!("the reflector's examples do not parse: {other:?}"),
    }
}

#[test]
fn man_page_documents_every_flag_and_variable() {
    let page = read("packaging/elayday.1");
    let every = [SERVER_FLAGS, REFLECTOR_FLAGS, CLIENT_FLAGS, DEMO_FLAGS];
    for flag in every.into_iter().flatten() {
        let roff_flag = format!("\\-\\-{}", flag.name.replace('-', "\\-"));
        assert!(
            page.contains(&roff_flag),
            "elayday.1 does not document --{}",
            flag.name
        );
        assert!(
            page.contains(flag.env),
            "elayday.1 does not document {}",
            flag.env
        );
    }
}

#[test]
fn units_start_each_role_from_its_default_file() {
    for (unit, role, file) in [
        ("systemd/elayday.service", "server", "/etc/default/elayday"),
        (
            "systemd/elayday-reflector.service",
            "reflector",
            "/etc/default/elayday-reflector",
        ),
    ] {
        let text = read(unit);
        let settings: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        for expected in [
            format!("ExecStart=/usr/bin/elayday {role}"),
            format!("EnvironmentFile={file}"),
            "Type=notify".to_string(),
            "Restart=on-failure".to_string(),
            "RestartPreventExitStatus=2".to_string(),
            "DynamicUser=yes".to_string(),
            "CapabilityBoundingSet=".to_string(),
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX".to_string(),
        ] {
            assert!(
                settings.contains(&expected.as_str()),
                "{unit}: no {expected}"
            );
        }
    }
}
