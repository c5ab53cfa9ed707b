//! roles: the supervisor of the role threads. A dead thread ends the process.
//!
//! A *role* is a thread that lives as long as the process: udp-recv, udp-send and processor in a
//! node, reflector, metrics, signals. Each is started with [`spawn_role`]. If one panics, or
//! returns while no shutdown was requested, the process logs one line naming the thread and the
//! cause and exits with status [`EXIT_ROLE_DIED`], so that the service manager restarts it
//! (systemd's `Restart=`): never a half-alive node. A role that fails with an error it can
//! report asks [`Shutdown::request`] first; it then stops in order and whoever joins it reports
//! the error. This module also owns the panic hook that writes a panic as one line.
//!
//! It must not restart anything itself, nor know what a role does.
//!
//! Fault injection, for tests only: when [`PANIC_THREAD_VAR`] (`ELAYDAY_TEST_PANIC_THREAD`)
//! names a role, that role panics as it starts, with the message [`PANIC_REQUESTED`].

use std::any::Any;
use std::io::{self, Write};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use std::thread::JoinHandle;
use std::time::Duration;

use super::shutdown::Shutdown;

/// The exit status of a process whose role thread died (`EX_SOFTWARE`, an internal error).
pub const EXIT_ROLE_DIED: i32 = 70;

/// The variable that makes the role of that name panic as it starts (tests only).
pub const PANIC_THREAD_VAR: &str = "ELAYDAY_TEST_PANIC_THREAD";

/// The panic message of a role made to panic by [`PANIC_THREAD_VAR`].
pub const PANIC_REQUESTED: &str = "panic requested by ELAYDAY_TEST_PANIC_THREAD";

/// Set as a panic begins, before it unwinds: a role that stops because another one's panic
/// dropped its channel is a consequence, and leaves the report to the role that panicked.
static PANICKING: AtomicBool = AtomicBool::new(false);

/// How long a role that stopped after a panic elsewhere waits for that panic's report.
const CAUSE_WAIT: Duration = Duration::from_secs(2);

/// Chains a hook that sets [`PANICKING`] in front of whatever hook is installed (once).
fn watch_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            PANICKING.store(true, Ordering::SeqCst);
            previous(info);
        }));
    });
}

/// Runs `f` on a new OS thread named `name`, supervised: if `f` panics, or returns while
/// `shutdown` was not requested, the process exits with [`EXIT_ROLE_DIED`] after one line
/// saying which role died and why. Otherwise `f`'s value is what the handle's `join` returns
/// (it cannot be a panic: that ends the process first).
///
/// Errors are those of spawning the thread.
pub fn spawn_role<T, F>(name: &str, shutdown: &Shutdown, f: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    watch_panics();
    let inject = panic_requested(name, std::env::var(PANIC_THREAD_VAR).ok().as_deref());
    let shutdown = shutdown.clone();
    let role = name.to_string();
    std::thread::Builder::new()
        .name(role.clone())
        .spawn(move || {
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                if inject {
                    panic!("{PANIC_REQUESTED}");
                }
                f()
            }));
            match outcome {
                Ok(value) if shutdown.is_requested() => value,
                Ok(_) => {
                    if PANICKING.load(Ordering::SeqCst) {
                        // Another role's panic ended this one: its report says why.
                        std::thread::sleep(CAUSE_WAIT);
                    }
                    die(&format!(
                        "role thread '{role}' stopped unexpectedly; exiting"
                    ))
                }
                Err(payload) => die(&format!(
                    "role thread '{role}' died: {}; exiting",
                    one_line(panic_message(payload.as_ref()))
                )),
            }
        })
}

/// Whether the role `name` is to panic as it starts, `setting` being [`PANIC_THREAD_VAR`].
fn panic_requested(name: &str, setting: Option<&str>) -> bool {
    setting == Some(name)
}

/// Writes `line` (through the logger when it takes errors, else straight to stderr) and ends
/// the process at once with [`EXIT_ROLE_DIED`].
fn die(line: &str) -> ! {
    if log::log_enabled!(log::Level::Error) {
        log::error!("{line}");
    } else {
        eprintln!("{line}");
    }
    let _ = io::stderr().flush();
    // `_exit`, not `exit`: the other threads are still running, and the destructors and exit
    // handlers `exit` would run (the gRPC C-core's among them) must not run under their feet.
    // SAFETY: `_exit` ends the process; nothing of it is used afterwards.
    unsafe { libc::_exit(EXIT_ROLE_DIED) }
}

/// Makes every panic one line on stderr, `thread '<name>' panicked at <file:line>: <message>`,
/// instead of Rust's several; a backtrace follows only when `RUST_BACKTRACE` asks for one.
/// For the daemons (node, reflector, demo), whose stderr is the journal. Install it before the
/// first role starts ([`spawn_role`] chains its own hook in front of it).
pub fn install_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()));
        let line = panic_line(
            thread.name().unwrap_or("<unnamed>"),
            location.as_deref(),
            panic_message(info.payload()),
        );
        let backtrace = std::backtrace::Backtrace::capture();
        let mut stderr = io::stderr().lock();
        let _ = writeln!(stderr, "{line}");
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            let _ = writeln!(stderr, "{backtrace}");
        }
    }));
}

/// `thread 'udp-recv' panicked at src/ring.rs:120: index out of bounds`, on one line.
fn panic_line(thread: &str, location: Option<&str>, message: &str) -> String {
    let at = location.map_or(String::new(), |l| format!(" at {l}"));
    one_line(&format!("thread '{thread}' panicked{at}: {message}"))
}

/// The message a panic was given (`panic!("...")` makes a `&str` or a `String`).
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "(a panic without a message)"
    }
}

/// Line breaks as spaces: one journal entry per cause.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_the_named_role_is_made_to_panic() {
        assert!(panic_requested("reflector", Some("reflector")));
        assert!(!panic_requested("reflector", Some("metrics")));
        assert!(!panic_requested("reflector", Some("")));
        assert!(!panic_requested("reflector", None));
    }

    #[test]
    fn panic_messages_are_read_from_either_payload() {
        let text: Box<dyn Any + Send> = Box::new("static text");
        assert_eq!(panic_message(text.as_ref()), "static text");
        let formatted: Box<dyn Any + Send> = Box::new(format!("{} {}", "made", "up"));
        assert_eq!(panic_message(formatted.as_ref()), "made up");
        let other: Box<dyn Any + Send> = Box::new(7u32);
        assert_eq!(panic_message(other.as_ref()), "(a panic without a message)");
    }

    #[test]
    fn a_panic_is_one_line() {
        assert_eq!(
            panic_line("udp-recv", Some("src/ring.rs:120"), "index 9\nout of range"),
            "thread 'udp-recv' panicked at src/ring.rs:120: index 9 out of range"
        );
        assert_eq!(
            panic_line("metrics", None, "oops"),
            "thread 'metrics' panicked: oops"
        );
    }

    #[test]
    fn a_role_stopped_on_request_hands_over_its_value() {
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        let role = spawn_role("roles-unit-test", &shutdown, move || {
            while !stop.wait_timeout(Duration::from_millis(10)) {}
            std::thread::current().name().map(str::to_string)
        })
        .unwrap();
        shutdown.request();
        assert_eq!(role.join().unwrap().as_deref(), Some("roles-unit-test"));
    }
}
