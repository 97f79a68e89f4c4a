//! A one-shot "stop now" signal from the run to its producers or consumers.
//!
//! Producers check it once per message, so the check is a relaxed atomic load; tasks that
//! are parked (a rate-limit sleep, an idle consumer) await the watch channel instead.
//! Producers and consumers get separate signals so consumers can drain after producers stop.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};
use tokio::sync::watch;

/// Held by the run; triggering it stops every task holding the paired [`StopSignal`].
pub struct StopSwitch {
    flag: Arc<AtomicBool>,
    tx: watch::Sender<bool>,
}

/// Held by each task.
#[derive(Clone)]
pub struct StopSignal {
    flag: Arc<AtomicBool>,
    rx: watch::Receiver<bool>,
}

pub fn pair() -> (StopSwitch, StopSignal) {
    let flag = Arc::new(AtomicBool::new(false));
    let (tx, rx) = watch::channel(false);
    (
        StopSwitch {
            flag: flag.clone(),
            tx,
        },
        StopSignal { flag, rx },
    )
}

impl StopSwitch {
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::Relaxed);
        self.tx.send_replace(true);
    }
}

impl StopSignal {
    pub fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Resolves once stopped; cheap to keep pinned across a loop.
    pub async fn stopped(&self) {
        let mut rx = self.rx.clone();
        // A dropped switch means the run is gone: as good as stopped.
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}
