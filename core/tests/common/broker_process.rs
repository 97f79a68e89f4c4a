//! The real `warren` binary as a broker a test can stop and start again: on ephemeral ports,
//! on a data directory of the test's own, with everything it printed (over every run) kept
//! for the failure message.
//!
//! A test that fails while it holds a [`BrokerProcess`] gets the broker's whole output printed
//! when the broker is dropped during the unwinding, so the harness's own panics stay short.

// Every test crate that has `mod common;` compiles this; not every one uses all of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::spawn_warren_under;

/// How long a start may take before the test calls it a failure (generous: a loaded
/// 2-core machine has been seen to take 15 s to create a fresh data directory's stores).
const START_PATIENCE: Duration = Duration::from_secs(60);
/// How long a graceful stop may take before the test calls it a failure.
const STOP_PATIENCE: Duration = Duration::from_secs(30);

/// A data directory under the system's temp directory, unique to this process and call,
/// removed when dropped (also when the test fails).
#[derive(Debug)]
pub struct TempDataDir {
    path: PathBuf,
}

impl TempDataDir {
    /// A fresh (absent) directory whose name contains `name`.
    pub fn new(name: &str) -> TempDataDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("warren-e2e-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempDataDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// What the broker printed, line by line, over all its runs.
#[derive(Debug, Default)]
struct Log {
    lines: Vec<String>,
    /// Index of the current run's first line.
    run_start: usize,
}

#[derive(Debug, Default)]
struct Shared {
    log: Mutex<Log>,
    grew: Condvar,
}

impl Shared {
    fn log(&self) -> MutexGuard<'_, Log> {
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, line: String) {
        self.log().lines.push(line);
        self.grew.notify_all();
    }
}

/// `warren --listen 127.0.0.1:0 --management-listen 127.0.0.1:0 --prometheus-listen
/// 127.0.0.1:0 --data-dir <dir> --log-level info`, run (and re-run) by a test. Dropping it kills a broker still running.
#[derive(Debug)]
pub struct BrokerProcess {
    data_dir: PathBuf,
    child: Option<Child>,
    readers: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
    runs: u32,
    amqp: SocketAddr,
    admin: SocketAddr,
    prometheus: SocketAddr,
    /// Flags added to every run's command line.
    extra_args: Vec<String>,
    /// A command the binary is run under (e.g. `prlimit --as=N --`), if any.
    wrapper: Vec<String>,
}

impl BrokerProcess {
    /// Starts the broker on `data_dir` and waits until it listens on both its ports.
    pub fn start(data_dir: &Path) -> BrokerProcess {
        BrokerProcess::start_with(data_dir, &[], &[])
    }

    /// Like [`Self::start`], with `extra_args` added to the command line and the binary run
    /// under `wrapper` (a command that ends by executing its arguments, like `prlimit --as=N
    /// --`, so the process is still the broker).
    pub fn start_with(data_dir: &Path, extra_args: &[&str], wrapper: &[&str]) -> BrokerProcess {
        let unbound = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut broker = BrokerProcess {
            data_dir: data_dir.to_owned(),
            child: None,
            readers: Vec::new(),
            shared: Arc::default(),
            runs: 0,
            amqp: unbound,
            admin: unbound,
            prometheus: unbound,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            wrapper: wrapper.iter().map(|a| a.to_string()).collect(),
        };
        broker.launch();
        broker
    }

    /// Starts the broker again on the same directory, after [`Self::stop`] or
    /// [`Self::kill9`]. Its ports are new.
    pub fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "restart() of a broker that is still running: stop or kill it first"
        );
        self.launch();
    }

    /// SIGKILL, then waits for the process to be gone.
    pub fn kill9(&mut self) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .expect("kill9() of a broker that is not running");
        child.kill().expect("SIGKILL sent");
        let status = child.wait().expect("killed broker reaped");
        self.join_readers();
        self.shared.push(format!("----- killed: {status} -----"));
        status
    }

    /// SIGTERM, then waits (bounded) for the broker to shut down, and checks that it exited
    /// successfully.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .expect("stop() of a broker that is not running");
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("the kill command runs");
        assert!(sent.success(), "kill -TERM {} failed: {sent}", child.id());
        let deadline = Instant::now() + STOP_PATIENCE;
        let status = loop {
            if let Some(status) = child.try_wait().expect("waitable") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.join_readers();
                panic!("warren did not exit within {STOP_PATIENCE:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.join_readers();
        self.shared.push(format!("----- stopped: {status} -----"));
        assert!(
            status.success(),
            "warren exited with {status} after SIGTERM"
        );
        status
    }

    /// Whether the broker process is still running (it may have exited on its own).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child.try_wait().expect("waitable").is_none(),
            None => false,
        }
    }

    /// The process id of the current run (the broker itself, also under a wrapper).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f` of the current run.
    pub fn amqp_uri(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.amqp)
    }

    /// The AMQP listener's address of the current run.
    pub fn amqp_addr(&self) -> SocketAddr {
        self.amqp
    }

    /// `http://127.0.0.1:PORT` of the current run's management API.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// `http://127.0.0.1:PORT` of the current run's Prometheus endpoint.
    pub fn prometheus_url(&self) -> String {
        format!("http://{}", self.prometheus)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Everything the broker printed, over all runs (each run starts with a marker line).
    pub fn output(&self) -> String {
        self.shared.log().lines.join("\n")
    }

    /// What the current (or last) run printed.
    pub fn run_output(&self) -> String {
        let log = self.shared.log();
        log.lines[log.run_start..].join("\n")
    }

    fn launch(&mut self) {
        self.runs += 1;
        {
            let mut log = self.shared.log();
            log.run_start = log.lines.len();
            log.lines
                .push(format!("----- warren run {} -----", self.runs));
        }
        let mut args: Vec<&str> = vec![
            "--listen",
            "127.0.0.1:0",
            "--management-listen",
            "127.0.0.1:0",
            "--log-level",
            "info",
        ];
        args.extend(self.extra_args.iter().map(String::as_str));
        let wrapper: Vec<&str> = self.wrapper.iter().map(String::as_str).collect();
        let mut child = spawn_warren_under(&wrapper, &args, &self.data_dir);
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        self.readers = vec![
            read_lines(stdout, self.shared.clone()),
            read_lines(stderr, self.shared.clone()),
        ];
        self.child = Some(child);
        self.wait_until_listening();
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + START_PATIENCE;
        let shared = self.shared.clone();
        let mut log = shared.log();
        loop {
            let run = &log.lines[log.run_start..];
            let amqp = run
                .iter()
                .find_map(|l| addr_after(l, "listening local_addr="));
            let admin = run
                .iter()
                .find_map(|l| addr_after(l, "management API listening local="));
            let prometheus = run
                .iter()
                .find_map(|l| addr_after(l, "Prometheus endpoint listening local="));
            if let (Some(amqp), Some(admin), Some(prometheus)) = (amqp, admin, prometheus) {
                self.amqp = amqp;
                self.admin = admin;
                self.prometheus = prometheus;
                return;
            }
            let child = self.child.as_mut().expect("launched");
            if let Some(status) = child.try_wait().expect("waitable") {
                drop(log);
                self.child = None;
                self.join_readers();
                panic!("warren exited ({status}) before listening");
            }
            if Instant::now() > deadline {
                drop(log);
                let _ = self.kill9();
                panic!("warren did not announce its ports within {START_PATIENCE:?}");
            }
            log = shared
                .grew
                .wait_timeout(log, Duration::from_millis(100))
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.join_readers();
        }
        if std::thread::panicking() {
            eprintln!(
                "===== warren's output (data dir {}) =====\n{}\n===== end of warren's output =====",
                self.data_dir.display(),
                self.output()
            );
        }
    }
}

/// A thread appending every line `pipe` gives (ANSI colours removed) to `shared`.
fn read_lines(pipe: impl Read + Send + 'static, shared: Arc<Shared>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    shared.push(strip_ansi(text.trim_end_matches(['\n', '\r'])));
                }
            }
        }
    })
}

/// `text` without its ANSI escape sequences (`ESC [ … letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The socket address that follows `marker` in `line`, if any.
fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once(marker)?;
    rest.split_whitespace().next()?.parse().ok()
}
