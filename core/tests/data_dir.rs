//! The `warren` binary and its data directory: one broker per directory (a second is refused
//! with the first one's pid, and a killed one leaves no stale lock), and a directory in a
//! format this Warren does not read is refused. Runs the real binary on ephemeral ports.

mod common;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use common::{exit_of, spawn_warren, text};

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warren-datadir-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn warren(data_dir: &Path) -> Child {
    spawn_warren(
        &[
            "--listen",
            "127.0.0.1:0",
            "--management-listen",
            "127.0.0.1:0",
        ],
        data_dir,
    )
}

/// Waits until `child` holds `data_dir` (its pid is in the lock file).
fn wait_until_holding(child: &mut Child, data_dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid = child.id().to_string();
    loop {
        let holder = std::fs::read_to_string(data_dir.join("LOCK")).unwrap_or_default();
        if holder.trim() == pid {
            return;
        }
        if let Some(status) = child.try_wait().expect("waitable") {
            panic!(
                "warren exited ({status}) before holding {}",
                data_dir.display()
            );
        }
        assert!(Instant::now() < deadline, "warren never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_second_broker_on_one_directory_is_refused_and_a_killed_one_leaves_no_lock() {
    let dir = fresh_dir("lock");
    let mut first = warren(&dir);
    wait_until_holding(&mut first, &dir);
    assert_eq!(
        std::fs::read_to_string(dir.join("FORMAT"))
            .expect("format stamped")
            .trim(),
        "warren-data 1"
    );

    let second = exit_of(warren(&dir), "on a directory it should refuse");
    let log = text(&second);
    assert!(!second.status.success(), "{log}");
    assert!(
        log.contains(&format!(
            "data directory {} is in use by another Warren (process {})",
            dir.display(),
            first.id()
        )),
        "{log}"
    );
    assert!(log.contains("--data-dir"), "{log}");

    first.kill().expect("kill -9");
    first.wait().expect("reaped");
    let mut third = warren(&dir);
    wait_until_holding(&mut third, &dir);
    third.kill().expect("kill");
    third.wait().expect("reaped");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_directory_in_an_unknown_format_is_refused() {
    let dir = fresh_dir("format");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("FORMAT"), "warren-data 7\n").expect("stamp");
    let output = exit_of(warren(&dir), "on a directory it should refuse");
    let log = text(&output);
    assert!(!output.status.success(), "{log}");
    assert!(
        log.contains("holds format 'warren-data 7', and this Warren reads format 1 only"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
