//! The Prometheus endpoint end to end: a real node with `--bind-metrics`, scraped over real TCP;
//! every line of the answer is parsed strictly as the text exposition format 0.0.4.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// An HTTP answer: status code, headers (lower-case names), body.
struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// Sends `request` as is and reads the answer to the end (the server closes the connection).
fn http(addr: SocketAddr, request: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .expect("a whole answer in time");
    parse_answer(&raw)
}

fn parse_answer(raw: &[u8]) -> Answer {
    let text = String::from_utf8(raw.to_vec()).expect("the answer is UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: HashMap<String, String> = lines
        .map(|l| {
            let (name, value) = l.split_once(": ").expect("a header line");
            (name.to_ascii_lowercase(), value.to_string())
        })
        .collect();
    let length: usize = headers["content-length"].parse().unwrap();
    assert!(
        length == body.len() || body.is_empty(),
        "Content-Length matches the body (or there is none: HEAD)"
    );
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

fn scrape(addr: SocketAddr) -> Answer {
    http(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: test\r\nAccept: text/plain\r\n\r\n",
    )
}

/// One sample: labels and value.
#[derive(Debug, Clone)]
struct Sample {
    labels: Vec<(String, String)>,
    value: f64,
}

/// A metric family: its TYPE and samples.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    samples: Vec<Sample>,
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `{a="x",b="y\"z"}` at the start of `text`; returns the labels and the rest.
fn parse_labels(text: &str) -> (Vec<(String, String)>, &str) {
    let mut labels = Vec::new();
    let mut rest = text.strip_prefix('{').unwrap();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return (labels, after);
        }
        let (name, after) = rest.split_once("=\"").expect("label=\"value\"");
        assert!(is_label_name(name), "label name {name:?}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("a closing quote") {
                (_, '\\') => match chars.next().expect("an escape").1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    other => panic!("bad escape \\{other}"),
                },
                (i, '"') => break i,
                (_, '\n') => panic!("raw line feed in a label value"),
                (_, c) => value.push(c),
            }
        };
        assert!(!labels.iter().any(|(n, _)| n == name), "label {name} twice");
        labels.push((name.to_string(), value));
        rest = &after[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else {
            assert!(rest.starts_with('}'), "expected , or }} in {text:?}");
        }
    }
}

fn parse_value(text: &str) -> f64 {
    match text {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => {
            assert!(
                text.chars()
                    .all(|c| c.is_ascii_digit() || "+-.eE".contains(c)),
                "value {text:?}"
            );
            text.parse().unwrap_or_else(|_| panic!("value {text:?}"))
        }
    }
}

/// Parses the whole exposition strictly: every line is a HELP, a TYPE or a sample; each family
/// has one HELP and one TYPE, before its samples, and its samples in one block.
fn parse_exposition(text: &str) -> HashMap<String, Family> {
    assert!(text.ends_with('\n'), "the exposition ends with a line feed");
    let mut families: HashMap<String, Family> = HashMap::new();
    let mut helped = Vec::new();
    let mut current: Option<String> = None;
    let mut finished = Vec::new();
    for line in text.lines() {
        assert!(!line.is_empty(), "no empty lines");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(is_metric_name(name), "{line}");
            assert!(!help.trim().is_empty(), "{line}");
            assert!(!helped.contains(&name.to_string()), "HELP twice: {line}");
            helped.push(name.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(is_metric_name(name), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                helped.contains(&name.to_string()),
                "HELP before TYPE: {line}"
            );
            assert!(!families.contains_key(name), "TYPE twice: {line}");
            if let Some(previous) = current.replace(name.to_string()) {
                finished.push(previous);
            }
            families.insert(
                name.to_string(),
                Family {
                    kind: kind.to_string(),
                    samples: Vec::new(),
                },
            );
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment {line:?}");
        let name_end = line.find(['{', ' ']).expect("a sample");
        let name = &line[..name_end];
        assert!(is_metric_name(name), "{line}");
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..])
        } else {
            (Vec::new(), &line[name_end..])
        };
        let fields: Vec<&str> = rest
            .strip_prefix(' ')
            .expect("a space before the value")
            .split(' ')
            .collect();
        assert!(
            (1..=2).contains(&fields.len()),
            "value and optional timestamp: {line}"
        );
        let value = parse_value(fields[0]);
        if let Some(timestamp) = fields.get(1) {
            timestamp.parse::<i64>().expect("an integer timestamp");
        }
        assert_eq!(
            current.as_deref(),
            Some(name),
            "sample outside its family's block (HELP/TYPE first): {line}"
        );
        assert!(!finished.contains(&name.to_string()), "{line}");
        let family = families.get_mut(name).unwrap();
        assert!(
            !family.samples.iter().any(|s| s.labels == labels),
            "duplicate sample {line}"
        );
        family.samples.push(Sample { labels, value });
    }
    assert_eq!(helped.len(), families.len(), "every HELP has a TYPE");
    families
}

fn value(families: &HashMap<String, Family>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let family = families
        .get(name)
        .unwrap_or_else(|| panic!("no family {name}"));
    family
        .samples
        .iter()
        .find(|s| {
            s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
        })
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
        .value
}

/// A node with a reflector and a metrics endpoint; returns the endpoint's address.
fn setup() -> (Node, Process, SocketAddr) {
    let metrics = free_tcp("127.0.0.1");
    let m = metrics.to_string();
    let (node, reflector) = node_with_reflector("0.2", &["--bind-metrics", &m]);
    node.process
        .wait_for_log("Prometheus metrics on", Duration::from_secs(10));
    (node, reflector, metrics)
}

#[test]
fn the_endpoint_serves_prometheus_text_with_plausible_values() {
    let (node, _reflector, metrics) = setup();
    let value_len = 100_000;
    put(&node.client, "m", &vec![42u8; value_len]).unwrap();
    let families = wait_until(
        Duration::from_secs(20),
        "a loop with the value in it",
        || {
            let answer = scrape(metrics);
            assert_eq!(answer.status, 200, "{}", answer.body);
            assert!(
                answer.headers["content-type"].starts_with("text/plain; version=0.0.4"),
                "{:?}",
                answer.headers
            );
            let families = parse_exposition(&answer.body);
            (value(&families, "elayday_circulating_values", &[]) == 1.0).then_some(families)
        },
    );
    let kinds = [
        ("elayday_build_info", "gauge"),
        ("elayday_loop_closed", "gauge"),
        ("elayday_loop_period_seconds", "gauge"),
        ("elayday_circulating_datagrams", "gauge"),
        ("elayday_circulating_bytes", "gauge"),
        ("elayday_circulating_values", "gauge"),
        ("elayday_datagrams_received_total", "counter"),
        ("elayday_datagrams_forwarded_total", "counter"),
        ("elayday_forwarded_bytes_total", "counter"),
        ("elayday_datagrams_dropped_total", "counter"),
        ("elayday_uptime_seconds", "gauge"),
        ("elayday_pending_requests", "gauge"),
    ];
    for (name, kind) in kinds {
        assert_eq!(
            families.get(name).map(|f| f.kind.as_str()),
            Some(kind),
            "{name}"
        );
    }
    assert!(families.keys().all(|name| name.starts_with("elayday_")));
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        value(&families, "elayday_build_info", &[("version", version)]),
        1.0
    );
    assert_eq!(value(&families, "elayday_loop_closed", &[]), 1.0);
    let last = value(
        &families,
        "elayday_loop_period_seconds",
        &[("stat", "last")],
    );
    let min = value(&families, "elayday_loop_period_seconds", &[("stat", "min")]);
    let max = value(&families, "elayday_loop_period_seconds", &[("stat", "max")]);
    assert!((0.19..5.0).contains(&last), "a 0.2 s reflector: {last}");
    assert!(min <= last && last <= max, "{min} {last} {max}");
    let bytes = value(&families, "elayday_circulating_bytes", &[]);
    let datagrams = value(&families, "elayday_circulating_datagrams", &[]);
    assert!(
        bytes > value_len as f64 && bytes < 2.0 * value_len as f64,
        "{bytes}"
    );
    assert!(datagrams >= (value_len / 1232) as f64, "{datagrams}");
    let forwarded = value(&families, "elayday_datagrams_forwarded_total", &[]);
    assert!(forwarded >= datagrams, "{forwarded}");
    assert!(value(&families, "elayday_forwarded_bytes_total", &[]) >= bytes);
    assert!(value(&families, "elayday_datagrams_received_total", &[]) >= forwarded);
    let reasons = &families["elayday_datagrams_dropped_total"].samples;
    assert!(reasons.len() >= 10, "every reason, zeros included");
    assert!(reasons
        .iter()
        .all(|s| s.labels[0].0 == "reason" && s.value == 0.0));
    assert!(value(&families, "elayday_uptime_seconds", &[]) > 0.0);
    assert!(
        value(&families, "elayday_pending_requests", &[]) >= 1.0,
        "this scrape"
    );

    // Counters only grow.
    let again = parse_exposition(&scrape(metrics).body);
    assert!(value(&again, "elayday_datagrams_forwarded_total", &[]) >= forwarded);
}

#[test]
fn other_paths_methods_and_garbage_get_http_errors() {
    let (_node, _reflector, metrics) = setup();
    let answer = http(metrics, "GET /other HTTP/1.1\r\n\r\n");
    assert_eq!(answer.status, 404);
    let answer = http(
        metrics,
        "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!(answer.status, 405);
    assert_eq!(answer.headers["allow"], "GET, HEAD");
    let answer = http(metrics, "HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(answer.status, 200);
    assert!(answer.body.is_empty(), "no body for HEAD");
    assert!(answer.headers["content-length"].parse::<usize>().unwrap() > 500);
    for garbage in [
        "HELLO\r\n\r\n",
        "GET /metrics\r\n\r\n",
        "GET metrics HTTP/1.1\r\n\r\n",
        "GET /metrics SPDY/3\r\n\r\n",
        "\u{1}\u{2}\u{3}\r\n\r\n",
    ] {
        let answer = http(metrics, garbage);
        assert_eq!(answer.status, 400, "{garbage:?}");
    }
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "x".repeat(20_000));
    let mut stream = TcpStream::connect(metrics).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let _ = stream.write_all(huge.as_bytes()); // the server may stop reading and close early
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    assert!(
        raw.starts_with(b"HTTP/1.1 431 "),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    // Still serving.
    assert_eq!(scrape(metrics).status, 200);
}

#[test]
fn a_silent_client_does_not_hold_the_endpoint() {
    let (_node, _reflector, metrics) = setup();
    let mut silent = TcpStream::connect(metrics).unwrap();
    silent.write_all(b"GET /met").unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let started = Instant::now();
    let answer = scrape(metrics);
    assert_eq!(answer.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "served after {:?}",
        started.elapsed()
    );
    let mut raw = Vec::new();
    silent.read_to_end(&mut raw).unwrap();
    assert!(
        raw.starts_with(b"HTTP/1.1 408 "),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    // A client that connects and closes without a word is no trouble either.
    drop(TcpStream::connect(metrics).unwrap());
    assert_eq!(scrape(metrics).status, 200);
}

#[test]
fn a_taken_metrics_port_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let udp = free_udp("127.0.0.1").to_string();
    let destination = free_udp("127.0.0.1").to_string();
    let process = Process::spawn(
        &[
            "server",
            "--bind",
            &udp,
            "--destination",
            &destination,
            "--bind-metrics",
            &addr,
        ],
        &[],
    );
    let (status, log) = process.wait_exit(Duration::from_secs(20));
    assert!(!status.success());
    let wanted = format!("error: cannot bind metrics {addr}: Address already in use");
    assert!(log.iter().any(|l| l.starts_with(&wanted)), "{log:?}");
}
