//! The progress bar on stderr: elapsed time against the duration, connections open, and the current
//! handshake, reply and error rates (over the last tick, so a stall shows at once).

use std::{
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Duration,
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::{task::JoinHandle, time::Instant};

use super::client::Shared;

/// How often the bar is redrawn.
const TICK: Duration = Duration::from_millis(250);

/// A running progress bar; [`finish`](Progress::finish) clears it.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: ProgressBar,
    task: JoinHandle<()>,
}

impl Progress {
    pub fn start(shared: Arc<Shared>, duration: Duration) -> Self {
        let len = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("[{bar:30}] {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        let task = tokio::spawn(tick(shared, bar.clone(), duration));
        Self { bar, task }
    }

    pub fn finish(self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}

async fn tick(shared: Arc<Shared>, bar: ProgressBar, duration: Duration) {
    let mut last = (Instant::now(), shared.live.snapshot(), 0u64);
    let mut ticks = tokio::time::interval(TICK);
    loop {
        ticks.tick().await;
        let now = Instant::now();
        let snap = shared.live.snapshot();
        let errors = shared.live.errors.load(Relaxed);
        let secs = now.saturating_duration_since(last.0).as_secs_f64();
        let delta = snap.since(last.1);
        let rate = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let elapsed = now.saturating_duration_since(shared.start);
        let phase = if now < shared.deadline {
            ""
        } else {
            " draining"
        };
        bar.set_position(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
        bar.set_message(format!(
            "{:.1}/{:.1} s{phase} | open {} | {:.0} hs/s | {:.0} msg/s | errors {} ({:.0}/s)",
            elapsed.as_secs_f64(),
            duration.as_secs_f64(),
            shared.live.connections.load(Relaxed),
            rate(delta.handshakes),
            rate(delta.replies),
            errors,
            rate(errors.saturating_sub(last.2)),
        ));
        last = (now, snap, errors);
    }
}
