//! reflector: the delay reflector, which sends every datagram back to its sender after a fixed
//! delay, closing a delay-line loop with a single node.
//!
//! It owns one UDP socket, one preallocated byte ring holding the datagrams in flight
//! (`ring.rs`), and the one thread that runs [`Reflector::run`] (the `reflector` role, started
//! by [`Reflector::spawn`]). It must not look inside payloads, reorder datagrams, allocate or
//! make a syscall per datagram, or hold more than `max_buffer` bytes: a datagram that does not
//! fit is dropped and counted, and drops are logged at most once a second.

mod ring;

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::daemon::roles::spawn_role;
use crate::daemon::shutdown::Shutdown;
use crate::udp::{self, Outgoing, Receiver, Sender, SocketOptions};

use self::ring::Ring;

/// Receive slots hold any UDP payload, so nothing a node sends is truncated.
const MAX_DATAGRAM: usize = 65_536;
/// The longest the loop sleeps, so that a shutdown request is seen promptly.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// The most due datagrams sent per turn of the loop, so that receiving is never starved. One
/// receive takes up to 64 messages of up to 64 datagrams each (GRO): sending as many keeps up.
const MAX_REFLECT_PER_TURN: usize = 4096;
/// The least time between two warning lines about drops.
const WARN_INTERVAL_NS: u64 = 1_000_000_000;

/// What `elayday reflector` was asked for.
#[derive(Debug, Clone)]
pub struct ReflectorConfig {
    /// The address to listen on.
    pub bind: SocketAddr,
    /// How long each datagram is held before it goes back (zero sends it straight back).
    pub delay: Duration,
    /// Bytes of datagrams (payload, sender address and a 16-byte header each) held at once.
    pub max_buffer: usize,
    /// Kernel socket buffers to ask for.
    pub socket: SocketOptions,
}

/// What a run did. Every datagram received is accounted for exactly once:
/// `received = reflected + dropped_full + dropped_truncated + send_failures + held_datagrams`.
#[derive(Debug, Default, Clone)]
pub struct ReflectorStats {
    /// Datagrams that reached the reflector's socket.
    pub received: u64,
    /// Datagrams sent back.
    pub reflected: u64,
    /// Datagrams dropped because the ring was full.
    pub dropped_full: u64,
    /// Datagrams larger than the receive slots, dropped.
    pub dropped_truncated: u64,
    /// Datagrams the kernel dropped before the reflector could read them (not in `received`).
    /// A lower bound: with GRO the kernel counts a dropped coalesced buffer (up to 64
    /// datagrams) once.
    pub kernel_drops: u64,
    /// Datagrams the kernel refused to send back.
    pub send_failures: u64,
    /// Datagrams still in the ring when the run stopped, lost.
    pub held_datagrams: u64,
    /// Their payload bytes.
    pub held_bytes: u64,
}

/// A bound reflector, ready to [`Reflector::run`] on the calling thread.
pub struct Reflector {
    local_addr: SocketAddr,
    delay: Duration,
    recv_buffer: usize,
    send_buffer: usize,
    receiver: Receiver,
    sender: Sender,
    ring: Ring,
}

impl Reflector {
    /// Binds the socket (the error names the address, e.g. "cannot bind UDP [::1]:24602:
    /// Address already in use") and allocates the ring.
    pub fn bind(config: ReflectorConfig) -> io::Result<Reflector> {
        if config.max_buffer == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the reflector buffer must not be empty",
            ));
        }
        let ring = Ring::new(config.max_buffer)?;
        let bound =
            udp::bind(config.bind, &config.socket).map_err(|e| udp::bind_failed(config.bind, e))?;
        bound.warn_if_capped(&config.socket);
        let local_addr = bound.socket.local_addr()?;
        let sender = Sender::new(bound.socket.try_clone()?);
        Ok(Reflector {
            local_addr,
            delay: config.delay,
            recv_buffer: bound.recv_buffer,
            send_buffer: bound.send_buffer,
            receiver: Receiver::new(bound.socket, MAX_DATAGRAM),
            sender,
            ring,
        })
    }

    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Runs [`Reflector::run`] on the `reflector` role thread (see [`spawn_role`]): its `join`
    /// gives the run's result. A run that fails asks `shutdown` for a stop as it returns, so
    /// that the process stops in order and whoever joins the thread reports the error.
    pub fn spawn(self, shutdown: &Shutdown) -> io::Result<JoinHandle<io::Result<ReflectorStats>>> {
        let stop = shutdown.clone();
        spawn_role("reflector", shutdown, move || {
            let result = self.run(&stop);
            if result.is_err() {
                stop.request();
            }
            result
        })
    }

    /// Reflects datagrams until `shutdown.is_requested()`, then returns the stats (`held_*` is
    /// what was still in the ring, lost).
    pub fn run(mut self, shutdown: &Shutdown) -> io::Result<ReflectorStats> {
        log::info!(
            "reflector on {}: delay {:?}, buffer {} bytes, socket buffers {} bytes receive, {} bytes send",
            self.local_addr,
            self.delay,
            self.ring.capacity(),
            self.recv_buffer,
            self.send_buffer,
        );
        log::debug!(
            "reflector batching: UDP GRO {}, UDP GSO {}",
            on_off(self.receiver.gro()),
            on_off(self.sender.gso()),
        );

        let epoch = Instant::now();
        let now_ns = || u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let delay_ns = u64::try_from(self.delay.as_nanos()).unwrap_or(u64::MAX);
        let fd = self.receiver.socket().as_raw_fd();
        let mut stats = ReflectorStats::default();
        let mut warnings = DropWarnings::new(self.ring.capacity());
        // The last receive filled the batch: more is probably queued, skip the wait.
        let mut backlog = false;
        while !shutdown.is_requested() {
            let now = now_ns();
            self.reflect_due(now, &mut stats, &mut warnings)?;
            warnings.log_if_due(now);

            let readable = backlog || {
                let wait = match self.ring.oldest_due() {
                    Some(due) => Duration::from_nanos(due.saturating_sub(now)).min(MAX_WAIT),
                    None => MAX_WAIT,
                };
                wait_readable(fd, wait)?
            };
            backlog = false;
            if !readable {
                continue;
            }
            let due = now_ns().saturating_add(delay_ns);
            let mut full = 0;
            let ring = &mut self.ring;
            let report = self.receiver.recv_each_nonblocking(|peer, datagram| {
                if !ring.push(due, peer, datagram) {
                    full += 1;
                }
            })?;
            backlog = report.saturated;
            stats.received += (report.received + report.truncated) as u64;
            stats.dropped_full += full;
            stats.dropped_truncated += report.truncated as u64;
            stats.kernel_drops += report.kernel_drops;
            warnings.full += full;
            warnings.truncated += report.truncated as u64;
            warnings.kernel += report.kernel_drops;
        }
        stats.held_datagrams = self.ring.len() as u64;
        stats.held_bytes = self.ring.payload_bytes() as u64;
        log::info!(
            "reflector stopped: received {}, reflected {}, dropped {} (buffer full) + {} (too large) + {} (kernel), \
             {} send failures, {} datagrams ({} bytes) still held and lost",
            stats.received,
            stats.reflected,
            stats.dropped_full,
            stats.dropped_truncated,
            stats.kernel_drops,
            stats.send_failures,
            stats.held_datagrams,
            stats.held_bytes,
        );
        Ok(stats)
    }

    /// Sends back the datagrams due by `now`, oldest first, straight from the ring.
    fn reflect_due(
        &mut self,
        now: u64,
        stats: &mut ReflectorStats,
        warnings: &mut DropWarnings,
    ) -> io::Result<()> {
        let mut taken = 0;
        let due = self
            .ring
            .iter()
            .take_while(|entry| entry.due <= now)
            .take(MAX_REFLECT_PER_TURN);
        let report = self.sender.send_each(due.map(|entry| {
            taken += 1;
            Outgoing {
                payload: entry.payload,
                dest: entry.addr,
            }
        }))?;
        for _ in 0..taken {
            self.ring.pop();
        }
        stats.reflected += report.sent as u64;
        stats.send_failures += report.failed as u64;
        warnings.send_failures += report.failed as u64;
        Ok(())
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// Waits up to `timeout` for `fd` to become readable (or report an error, which the receive
/// then picks up).
fn wait_readable(fd: libc::c_int, timeout: Duration) -> io::Result<bool> {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: one valid pollfd, a valid timespec, no signal mask change.
    let rc = unsafe { libc::ppoll(&mut pollfd, 1, &timeout, std::ptr::null()) };
    if rc < 0 {
        let error = io::Error::last_os_error();
        return if error.raw_os_error() == Some(libc::EINTR) {
            Ok(false)
        } else {
            Err(error)
        };
    }
    Ok(rc > 0)
}

/// Drop counts waiting for the next warning line (at most one a second).
struct DropWarnings {
    capacity: usize,
    full: u64,
    truncated: u64,
    kernel: u64,
    send_failures: u64,
    last_ns: Option<u64>,
}

impl DropWarnings {
    fn new(capacity: usize) -> DropWarnings {
        DropWarnings {
            capacity,
            full: 0,
            truncated: 0,
            kernel: 0,
            send_failures: 0,
            last_ns: None,
        }
    }

    /// Logs the counts gathered since the last line if there are any and a second has passed.
    /// (Counts still pending at the end are in the totals of the stop line.)
    fn log_if_due(&mut self, now: u64) {
        if self.full + self.truncated + self.kernel + self.send_failures == 0 {
            return;
        }
        if self
            .last_ns
            .is_some_and(|last| now.saturating_sub(last) < WARN_INTERVAL_NS)
        {
            return;
        }
        log::warn!(
            "reflector lost datagrams: {} with the {}-byte buffer full, {} too large, {} dropped by the kernel, \
             {} refused on send",
            self.full,
            self.capacity,
            self.truncated,
            self.kernel,
            self.send_failures,
        );
        self.full = 0;
        self.truncated = 0;
        self.kernel = 0;
        self.send_failures = 0;
        self.last_ns = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::ring::HEADER;
    use super::*;
    use crate::udp::{Batch, BATCH_SLOTS};
    use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};

    const BUFFERS: SocketOptions = SocketOptions {
        recv_buffer: 4 << 20,
        send_buffer: 4 << 20,
    };
    /// Bytes a datagram takes in the ring besides its payload, for an IPv4 sender.
    const V4_OVERHEAD: usize = HEADER + 16;

    struct Running {
        addr: SocketAddr,
        shutdown: Shutdown,
        handle: JoinHandle<io::Result<ReflectorStats>>,
    }

    fn start(bind: SocketAddr, delay: Duration, max_buffer: usize) -> Running {
        let reflector = Reflector::bind(ReflectorConfig {
            bind,
            delay,
            max_buffer,
            socket: BUFFERS,
        })
        .unwrap();
        let addr = reflector.local_addr();
        let shutdown = Shutdown::new();
        let handle = {
            let shutdown = shutdown.clone();
            std::thread::spawn(move || reflector.run(&shutdown))
        };
        Running {
            addr,
            shutdown,
            handle,
        }
    }

    /// Requests a stop and waits (boundedly) for the run to return its stats.
    fn stop(running: Running) -> ReflectorStats {
        running.shutdown.request();
        let deadline = Instant::now() + Duration::from_secs(2);
        while !running.handle.is_finished() {
            assert!(
                Instant::now() < deadline,
                "the reflector did not stop within 2 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        running.handle.join().unwrap().unwrap()
    }

    fn v4() -> SocketAddr {
        (Ipv4Addr::LOCALHOST, 0).into()
    }

    /// A test client: numbered datagrams out, echoes in with their arrival time.
    struct Client {
        sender: Sender,
        receiver: Receiver,
        batch: Batch,
        sent_at: Vec<Instant>,
    }

    const CLIENT_SLOT: usize = 2048;

    impl Client {
        fn new(bind: SocketAddr) -> Client {
            let socket = udp::bind(bind, &BUFFERS).unwrap().socket;
            socket
                .set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            Client {
                sender: Sender::new(socket.try_clone().unwrap()),
                receiver: Receiver::new(socket, CLIENT_SLOT),
                batch: Batch::new(CLIENT_SLOT),
                sent_at: Vec::new(),
            }
        }

        fn addr(&self) -> SocketAddr {
            self.receiver.socket().local_addr().unwrap()
        }

        /// Sends datagrams `first..first + count`, each `payload(n)`, in batches.
        fn send(&mut self, to: SocketAddr, numbers: std::ops::Range<usize>) {
            let dest = to.into();
            let numbers: Vec<usize> = numbers.collect();
            for chunk in numbers.chunks(BATCH_SLOTS) {
                self.batch.clear();
                for &n in chunk {
                    self.batch.push_with(|slot| write_payload(n, slot));
                }
                let now = Instant::now();
                let report = self.sender.send_to(&self.batch, &dest).unwrap();
                assert_eq!(report.sent, chunk.len());
                for &n in chunk {
                    if self.sent_at.len() <= n {
                        self.sent_at.resize(n + 1, now);
                    }
                    self.sent_at[n] = now;
                }
            }
        }

        /// Receives echoes until `count` arrived or nothing came for `quiet`.
        fn receive(
            &mut self,
            count: usize,
            quiet: Duration,
        ) -> Vec<(Vec<u8>, Instant, SocketAddr)> {
            let mut got = Vec::new();
            let mut last = Instant::now();
            while got.len() < count && last.elapsed() < quiet {
                self.receiver.recv(&mut self.batch).unwrap();
                let now = Instant::now();
                for i in 0..self.batch.len() {
                    got.push((
                        self.batch.datagram(i).to_vec(),
                        now,
                        self.batch.peer(i).unwrap(),
                    ));
                    last = now;
                }
            }
            got
        }
    }

    /// Datagram `n`: its number, then a pattern, of a length that varies with `n`.
    fn write_payload(n: usize, slot: &mut [u8]) -> usize {
        let len = 8 + (n * 37) % 1200;
        slot[..8].copy_from_slice(&(n as u64).to_le_bytes());
        for (k, byte) in slot[8..len].iter_mut().enumerate() {
            *byte = (n + k * 7) as u8;
        }
        len
    }

    fn number_of(payload: &[u8]) -> usize {
        let n = u64::from_le_bytes(payload[..8].try_into().unwrap()) as usize;
        let mut expected = [0u8; CLIENT_SLOT];
        let len = write_payload(n, &mut expected);
        assert_eq!(payload, &expected[..len], "datagram {n} came back altered");
        n
    }

    fn check_echoes(
        client: &Client,
        got: &[(Vec<u8>, Instant, SocketAddr)],
        numbers: std::ops::Range<usize>,
        from: SocketAddr,
        delay: Duration,
    ) {
        let received: Vec<usize> = got
            .iter()
            .map(|(payload, _, _)| number_of(payload))
            .collect();
        assert_eq!(
            received,
            numbers.collect::<Vec<_>>(),
            "echoes missing or out of order"
        );
        for (payload, arrived, peer) in got {
            let n = number_of(payload);
            assert_eq!(*peer, from);
            let waited = arrived.duration_since(client.sent_at[n]);
            assert!(
                waited >= delay,
                "datagram {n} came back after {waited:?}, before the {delay:?} delay"
            );
        }
    }

    #[test]
    fn echoes_in_order_after_the_delay() {
        let delay = Duration::from_millis(50);
        let running = start(v4(), delay, 4 << 20);
        let mut client = Client::new(v4());
        client.send(running.addr, 0..300);
        let got = client.receive(300, Duration::from_secs(2));
        check_echoes(&client, &got, 0..300, running.addr, delay);
        let stats = stop(running);
        assert_eq!(
            (stats.received, stats.reflected, stats.dropped_full),
            (300, 300, 0)
        );
        assert_eq!((stats.held_datagrams, stats.held_bytes), (0, 0));
    }

    #[test]
    fn zero_delay_works_over_ipv6() {
        let bind: SocketAddr = (Ipv6Addr::LOCALHOST, 0).into();
        if UdpSocket::bind(bind).is_err() {
            eprintln!("skipping: no IPv6 loopback");
            return;
        }
        let running = start(bind, Duration::ZERO, 1 << 20);
        let mut client = Client::new(bind);
        for round in 0..5 {
            client.send(running.addr, round * 100..(round + 1) * 100);
            let got = client.receive(100, Duration::from_secs(2));
            check_echoes(
                &client,
                &got,
                round * 100..(round + 1) * 100,
                running.addr,
                Duration::ZERO,
            );
        }
        let stats = stop(running);
        assert_eq!((stats.received, stats.reflected), (500, 500));
    }

    #[test]
    fn a_full_buffer_drops_and_counts() {
        // Room for exactly five 100-byte datagrams, held for longer than the test sends.
        let running = start(v4(), Duration::from_millis(300), 5 * (V4_OVERHEAD + 100));
        let mut client = Client::new(v4());
        let dest = running.addr.into();
        client.batch.clear();
        for n in 0..20u8 {
            client.batch.push_with(|slot| {
                slot[..100].fill(n);
                100
            });
        }
        assert_eq!(
            client.sender.send_to(&client.batch, &dest).unwrap().sent,
            20
        );
        let got = client.receive(20, Duration::from_millis(600));
        let firsts: Vec<u8> = got.iter().map(|(payload, _, _)| payload[0]).collect();
        assert_eq!(firsts, vec![0, 1, 2, 3, 4]);
        assert!(got.iter().all(
            |(payload, _, _)| payload.len() == 100 && payload.iter().all(|&b| b == payload[0])
        ));
        let stats = stop(running);
        assert_eq!(
            (stats.received, stats.reflected, stats.dropped_full),
            (20, 5, 15)
        );
        assert_eq!(
            stats.received,
            stats.reflected
                + stats.dropped_full
                + stats.dropped_truncated
                + stats.send_failures
                + stats.held_datagrams
        );
    }

    #[test]
    fn drop_warnings_are_rate_limited() {
        let second = WARN_INTERVAL_NS;
        let mut warnings = DropWarnings::new(1000);
        warnings.log_if_due(5);
        assert_eq!(warnings.last_ns, None, "nothing to say, nothing said");
        warnings.full = 3;
        warnings.log_if_due(10);
        assert_eq!(
            (warnings.full, warnings.last_ns),
            (0, Some(10)),
            "the first drop is reported at once"
        );
        warnings.full = 2;
        warnings.kernel = 1;
        warnings.log_if_due(10 + second - 1);
        assert_eq!(
            (warnings.full, warnings.kernel),
            (2, 1),
            "held back within the second"
        );
        warnings.send_failures = 4;
        warnings.log_if_due(10 + second);
        assert_eq!(
            (warnings.full, warnings.kernel, warnings.send_failures),
            (0, 0, 0)
        );
        assert_eq!(warnings.last_ns, Some(10 + second));
    }

    #[test]
    fn each_client_gets_its_own_datagrams() {
        let delay = Duration::from_millis(20);
        let running = start(v4(), delay, 4 << 20);
        let mut a = Client::new(v4());
        let mut b = Client::new(v4());
        for round in 0..4 {
            a.send(running.addr, round * 50..(round + 1) * 50);
            b.send(running.addr, 1000 + round * 30..1000 + (round + 1) * 30);
        }
        let got_a = a.receive(200, Duration::from_secs(2));
        let got_b = b.receive(120, Duration::from_secs(2));
        check_echoes(&a, &got_a, 0..200, running.addr, delay);
        check_echoes(&b, &got_b, 1000..1120, running.addr, delay);
        assert!(a.addr() != b.addr());
        let stats = stop(running);
        assert_eq!(stats.reflected, 320);
    }

    #[test]
    fn wraps_around_a_small_buffer_many_times() {
        // Bursts of three datagrams through room for four of the largest: a ring can waste
        // up to one entry's worth at its end, so the bursts always fit, and their varying
        // sizes make the writer wrap at every kind of leftover (marker, short tail, restart).
        let largest = V4_OVERHEAD
            + (0..CLIENT_SLOT)
                .map(|n| write_payload(n, &mut [0u8; CLIENT_SLOT]))
                .max()
                .unwrap();
        let delay = Duration::from_millis(1);
        let running = start(v4(), delay, 4 * largest);
        let mut client = Client::new(v4());
        for round in 0..300 {
            client.send(running.addr, round * 3..round * 3 + 3);
            let got = client.receive(3, Duration::from_secs(2));
            check_echoes(&client, &got, round * 3..round * 3 + 3, running.addr, delay);
        }
        let stats = stop(running);
        assert_eq!(
            (stats.received, stats.reflected, stats.dropped_full),
            (900, 900, 0)
        );
    }

    #[test]
    fn stops_promptly_and_reports_what_it_held() {
        let running = start(v4(), Duration::from_secs(3600), 1 << 20);
        let mut client = Client::new(v4());
        client.send(running.addr, 0..10);
        let bytes: u64 = (0..10)
            .map(|n| write_payload(n, &mut [0u8; CLIENT_SLOT]) as u64)
            .sum();
        // Wait (boundedly) until the reflector holds them: nothing comes back for an hour.
        assert!(client.receive(1, Duration::from_millis(200)).is_empty());
        let asked = Instant::now();
        let stats = stop(running);
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "stop took {:?}",
            asked.elapsed()
        );
        assert_eq!(
            (stats.received, stats.held_datagrams, stats.held_bytes),
            (10, 10, bytes)
        );
    }

    #[test]
    fn bind_errors_name_the_address() {
        let taken = UdpSocket::bind(v4()).unwrap();
        let addr = taken.local_addr().unwrap();
        let config = ReflectorConfig {
            bind: addr,
            delay: Duration::ZERO,
            max_buffer: 1024,
            socket: BUFFERS,
        };
        let error = Reflector::bind(config).err().expect("the port is taken");
        assert_eq!(
            error.to_string(),
            format!("cannot bind UDP {addr}: Address already in use")
        );
    }
}
