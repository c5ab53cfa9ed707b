//! The readiness protocol of `Type=notify` units, played by the test as systemd would: a Unix
//! datagram socket named in `NOTIFY_SOCKET`, and a real `elayday` process that must report
//! READY=1 once it serves and STOPPING=1 when SIGTERM arrives.

mod common;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::Duration;

use common::*;

/// The service manager's end: a bound datagram socket and the value of `NOTIFY_SOCKET`.
struct ServiceManager {
    socket: UnixDatagram,
    notify_socket: String,
    path: Option<PathBuf>,
}

impl ServiceManager {
    fn at_path(name: &str) -> ServiceManager {
        let path = std::env::temp_dir().join(format!("elayday-{name}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        ServiceManager::ready(socket, path.to_str().unwrap().to_string(), Some(path))
    }

    fn abstract_name(name: &str) -> ServiceManager {
        let name = format!("elayday-{name}-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&address).expect("bind the abstract notify socket");
        ServiceManager::ready(socket, format!("@{name}"), None)
    }

    fn ready(socket: UnixDatagram, notify_socket: String, path: Option<PathBuf>) -> ServiceManager {
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        ServiceManager {
            socket,
            notify_socket,
            path,
        }
    }

    /// The next message, as its `KEY=VALUE` lines.
    fn receive(&self) -> Vec<String> {
        let mut buf = vec![0u8; 4096];
        let n = self
            .socket
            .recv(&mut buf)
            .expect("a notification within 30 s");
        String::from_utf8(buf[..n].to_vec())
            .expect("UTF-8")
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for ServiceManager {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn status(message: &[String]) -> &str {
    message
        .iter()
        .find_map(|line| line.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("no STATUS in {message:?}"))
}

#[test]
fn reflector_reports_ready_then_stopping() {
    let manager = ServiceManager::at_path("notify-reflector");
    let bind = free_udp("127.0.0.1");
    let b = bind.to_string();
    let process = Process::spawn(
        &["reflector", "--bind", &b],
        &[("NOTIFY_SOCKET", &manager.notify_socket)],
    );
    let ready = manager.receive();
    assert!(ready.contains(&"READY=1".to_string()), "{ready:?}");
    assert_eq!(status(&ready), format!("reflector on {bind}"));
    // Ready means bound: the port is taken now.
    assert!(std::net::UdpSocket::bind(bind).is_err(), "{bind} is bound");
    let pid = process.pid();
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let stopping = manager.receive();
    assert!(stopping.contains(&"STOPPING=1".to_string()), "{stopping:?}");
    let (exit, _) = process.wait_exit(Duration::from_secs(20));
    assert!(exit.success(), "{exit}");
}

#[test]
fn server_reports_ready_once_grpc_answers_on_an_abstract_socket() {
    let manager = ServiceManager::abstract_name("notify-server");
    let (udp, destination, grpc) = (
        free_udp("127.0.0.1"),
        free_udp("127.0.0.1"),
        free_tcp("127.0.0.1"),
    );
    let env = [("NOTIFY_SOCKET", manager.notify_socket.as_str())];
    let process = Process::server(udp, destination, grpc, &[], &env);
    let ready = manager.receive();
    assert!(ready.contains(&"READY=1".to_string()), "{ready:?}");
    assert_eq!(
        status(&ready),
        format!("node on {udp}, next hop {destination}, gRPC {grpc}")
    );
    // At READY the API answers at once: no retry loop here.
    let answer = stats(&client(grpc)).expect("the stats call answers right after READY=1");
    assert!(!answer.loop_closed, "no reflector, so no loop");
    let (exit, log) = process.terminate();
    assert!(exit.success(), "{exit}: {log:?}");
    let stopping = manager.receive();
    assert!(stopping.contains(&"STOPPING=1".to_string()), "{stopping:?}");
}

#[test]
fn an_unreachable_notify_socket_is_a_warning_not_a_failure() {
    let missing = std::env::temp_dir().join(format!(
        "elayday-notify-missing-{}.sock",
        std::process::id()
    ));
    let bind = free_udp("127.0.0.1");
    let b = bind.to_string();
    let process = Process::spawn(
        &["reflector", "--bind", &b],
        &[("NOTIFY_SOCKET", missing.to_str().unwrap())],
    );
    let warning =
        process.wait_for_log("cannot notify the service manager", Duration::from_secs(30));
    assert!(warning.contains("NOTIFY_SOCKET="), "{warning}");
    process.wait_for_log("reflector on", Duration::from_secs(30));
    let (exit, log) = process.terminate();
    assert!(exit.success(), "{exit}: {log:?}");
}
