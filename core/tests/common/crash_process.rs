//! A `warren` process a test can kill: started on ephemeral ports over a data directory, its
//! output collected on threads (so it never blocks on a full pipe), its AMQP port learnt
//! from the `listening local_addr=127.0.0.1:PORT` line it logs, and SIGKILLed on demand.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::spawn_warren;

/// What the broker logs once its AMQP listener is bound.
const LISTENING: &str = "listening local_addr=";

/// How long a start may take before the test calls it a failure.
const START_PATIENCE: Duration = Duration::from_secs(30);

/// A running `warren`, killed (if still running) when dropped.
pub struct CrashBroker {
    child: Option<Child>,
    addr: SocketAddr,
    output: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl CrashBroker {
    /// Starts `warren` on `data_dir` listening on `127.0.0.1:0` (AMQP and admin) with
    /// `--log-level info` and `extra` flags, and waits until it accepts AMQP connections.
    /// Panics, with what it printed, if it exits or stays silent instead.
    pub fn start(data_dir: &Path, extra: &[&str]) -> CrashBroker {
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--log-level",
            "info",
        ];
        args.extend_from_slice(extra);
        let mut child = spawn_warren(&args, data_dir);
        let output = Arc::new(Mutex::new(String::new()));
        let (lines, listening) = mpsc::channel();
        let readers = vec![
            collect(child.stdout.take().expect("piped stdout"), &output, &lines),
            collect(child.stderr.take().expect("piped stderr"), &output, &lines),
        ];
        drop(lines);
        let deadline = Instant::now() + START_PATIENCE;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match listening.recv_timeout(left.min(Duration::from_millis(50))) {
                Ok(addr) => break addr,
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Some(status) = child.try_wait().expect("waitable") {
                        let _ = child.wait();
                        panic!(
                            "warren exited ({status}) before listening; its output:\n{}",
                            output.lock().unwrap()
                        );
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "warren did not log {LISTENING:?} within {START_PATIENCE:?}; its output:\n{}",
                        output.lock().unwrap()
                    );
                }
            }
        };
        CrashBroker {
            child: Some(child),
            addr,
            output,
            readers,
        }
    }

    /// The AMQP listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// An AMQP URI for the default user and vhost.
    pub fn uri(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Everything it has printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// SIGKILLs it (`kill -9`: nothing of the broker runs after this), reaps it, and returns
    /// everything it printed.
    pub fn kill(mut self) -> String {
        self.reap();
        self.output()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().expect("waitable").is_none())
    }

    fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

impl Drop for CrashBroker {
    fn drop(&mut self) {
        self.reap();
    }
}

/// Reads `stream` line by line into `output` on a thread, sending the AMQP address on
/// `listening` when the line announcing it passes by. Ends when the process closes it.
fn collect(
    stream: impl Read + Send + 'static,
    output: &Arc<Mutex<String>>,
    listening: &mpsc::Sender<SocketAddr>,
) -> std::thread::JoinHandle<()> {
    let output = output.clone();
    let listening = listening.clone();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if let Some(addr) = listening_addr(&line) {
                let _ = listening.send(addr);
            }
            output.lock().unwrap().push_str(&line);
        }
    })
}

/// The address in a `... listening local_addr=127.0.0.1:PORT` line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once(LISTENING)?;
    rest.split_whitespace().next()?.parse().ok()
}
