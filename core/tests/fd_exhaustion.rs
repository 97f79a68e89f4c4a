//! The real binary out of file descriptors: run under `prlimit --nofile=64:64`, flooded with
//! connections until `accept` fails, it must log the episode once (not once per attempt),
//! back off, and accept again once connections close (saying so once accepting has worked
//! for a second).
//!
//! Runs the built binary, so it lives with this package's integration tests (see
//! `listen_conflicts.rs`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The descriptor limit the broker runs under: enough to start, soon exhausted.
const NOFILE: u32 = 64;
/// More connections than the limit leaves room for.
const FLOOD: usize = 2 * NOFILE as usize;

/// The broker under `prlimit`, its output collected line by line.
struct Limited {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    data_dir: std::path::PathBuf,
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

impl Limited {
    fn start() -> Limited {
        let data_dir = std::env::temp_dir().join(format!("warren-fd-test-{}", std::process::id()));
        let mut child = Command::new("prlimit")
            .arg(format!("--nofile={NOFILE}:{NOFILE}"))
            .arg(env!("CARGO_BIN_EXE_warren"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--management-listen",
                "127.0.0.1:0",
            ])
            .args(["--log-level", "info", "--data-dir"])
            .arg(&data_dir)
            .env_remove("WARREN_CONFIG")
            .env_remove("WARREN_LOG_LEVEL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("prlimit runs the warren binary");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        for out in [Box::new(stdout) as Box<dyn Read + Send>, Box::new(stderr)] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            });
        }
        Limited {
            child,
            log,
            data_dir,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (bounded) for a log line containing `needle`; the line.
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}; the log:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }
}

/// Whether a connection to `addr` is served: the protocol header is answered with a
/// `connection.start` method frame (type 1 on channel 0).
fn served(addr: SocketAddr) -> bool {
    let Ok(mut socket) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = socket.set_read_timeout(Some(Duration::from_secs(5)));
    if socket.write_all(b"AMQP\x00\x00\x09\x01").is_err() {
        return false;
    }
    let mut frame_start = [0u8; 3];
    socket.read_exact(&mut frame_start).is_ok() && frame_start == [1, 0, 0]
}

#[test]
fn running_out_of_descriptors_is_logged_once_and_accepting_resumes() {
    let broker = Limited::start();
    let listening = broker.wait_for("listening local_addr=");
    let addr: SocketAddr = listening
        .rsplit("local_addr=")
        .next()
        .and_then(|a| a.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("an address in {listening:?}"));
    let limit_line = broker.wait_for("open file limit");
    assert!(limit_line.contains(&NOFILE.to_string()), "{limit_line}");
    // Connections beyond the broker's descriptors wait in the listen backlog: connect()
    // succeeds, accept() fails on the broker's side.
    let flood: Vec<TcpStream> = (0..FLOOD)
        .map_while(|_| TcpStream::connect(addr).ok())
        .collect();
    assert!(
        flood.len() > NOFILE as usize,
        "only {} connected",
        flood.len()
    );
    broker.wait_for("out of file descriptors");
    // Let the back-off retry a few times (10 ms, 20 ms, 40 ms, … between attempts).
    std::thread::sleep(Duration::from_millis(700));
    drop(flood);
    // The backlog drains; the episode is over once accepting worked for a second without a
    // failure, which the next accepted connection reports.
    let deadline = Instant::now() + Duration::from_secs(20);
    while broker.count("accepting connections again after") == 0 {
        assert!(Instant::now() < deadline, "{}", broker.lines().join("\n"));
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            served(addr),
            "a new connection is served once descriptors are free"
        );
    }
    let again = broker.wait_for("accepting connections again after");
    let failures: u64 = again
        .rsplit("after ")
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count in {again:?}"));
    assert!(failures >= 2, "the episode had retries: {again}");
    assert_eq!(
        broker.count("out of file descriptors"),
        1,
        "one warning for an episode of {failures} failures; the log:\n{}",
        broker.lines().join("\n")
    );
    assert_eq!(broker.count("accept failed"), 0);
}
