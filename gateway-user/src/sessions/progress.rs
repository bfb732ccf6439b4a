//! Progress bars on long scans of the store, for the command line.
//!
//! Off by default, so the library (the web viewer, the tests) never draws; the `tollgate`
//! binary turns them on with [`enable`], and they show only when standard error is a terminal
//! and the scan is big enough to take a moment.

use std::{
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::recording::{RecordedEvent, Store, StoreError};

/// Stores smaller than this are read without a bar.
const WORTH_A_BAR: u64 = 32 * 1024 * 1024;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Lets scans draw progress bars on standard error (when it is a terminal).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Reads every event of the store at `dir` (as [`Store::read_all`]), with a progress bar
/// when enabled and worth it.
pub fn read_store(dir: &Path) -> Result<(Vec<RecordedEvent>, usize), StoreError> {
    if !ENABLED.load(Ordering::Relaxed) {
        return Store::read_all(dir);
    }
    let mut bar: Option<ProgressBar> = None;
    let read = Store::read_all_reporting(dir, |done, total| {
        if total < WORTH_A_BAR {
            return;
        }
        let bar = bar.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "scanning {msg} {wide_bar} {binary_bytes}/{binary_total_bytes} ({eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message(dir.display().to_string());
            bar
        });
        bar.set_position(done);
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    read
}
