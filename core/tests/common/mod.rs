//! Running the real `warren` binary from this package's integration tests (Cargo builds it
//! for them): a clean environment, captured output, and a bounded wait for it to exit.

pub mod broker_process;
pub mod confirmed;
pub mod memory;
pub mod raw_amqp;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Starts `warren` with `args` on `data_dir`, with none of the `WARREN_*` settings of the
/// environment the tests run in.
pub fn spawn_warren(args: &[&str], data_dir: &Path) -> Child {
    spawn_warren_under(&[], args, data_dir)
}

/// [`spawn_warren`] run under `wrapper` (`prlimit --as=N --`: the wrapper's arguments, then
/// the binary and its own); an empty wrapper runs the binary directly.
pub fn spawn_warren_under(wrapper: &[&str], args: &[&str], data_dir: &Path) -> Child {
    let binary = env!("CARGO_BIN_EXE_warren");
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(binary);
            c
        }
        None => Command::new(binary),
    };
    command.args(args);
    // Never the default 15692 unless a test asks for an address: parallel tests (and a
    // RabbitMQ beside them) would collide on it.
    if !args.contains(&"--prometheus-listen") {
        command.args(["--prometheus-listen", "127.0.0.1:0"]);
    }
    command
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("WARREN_LISTEN")
        .env_remove("WARREN_ADMIN_LISTEN")
        .env_remove("WARREN_MANAGEMENT_LISTEN")
        .env_remove("WARREN_PROMETHEUS_LISTEN")
        .env_remove("WARREN_CONFIG")
        .env_remove("WARREN_PLUGINS_DIR")
        .env_remove("WARREN_DATA_DIR")
        .env_remove("WARREN_SYNC")
        .env_remove("WARREN_DISK_FREE_LIMIT")
        .env_remove("WARREN_MEMORY_HIGH_WATERMARK")
        .env_remove("WARREN_LOG_LEVEL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the warren binary starts")
}

/// Waits for `child` to exit on its own and returns its output; kills it and fails (with
/// what it printed) if it is still running after a generous wait.
pub fn exit_of(mut child: Child, why_it_should_exit: &str) -> Output {
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("waitable").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "warren kept running {why_it_should_exit}; its output:\n{}",
                text(&output)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Everything the process printed.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
