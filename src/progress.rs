//! Progress display for put and get: a bar with bytes, rate and ETA on a
//! terminal, nothing otherwise (scripts get the one-line summary only).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;

pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(verb: &str, name: &str, total: u64) -> Self {
        if !std::io::stderr().is_terminal() || total == 0 {
            return Progress { bar: None };
        }
        let bar = ProgressBar::new(total);
        let style = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(format!("{verb} {name}"));
        Progress { bar: Some(bar) }
    }

    /// The callback the client library calls with each chunk's bytes.
    pub fn callback(&self) -> client::put::Progress {
        match &self.bar {
            Some(b) => {
                let b = b.clone();
                Arc::new(move |n| b.inc(n))
            }
            None => Arc::new(|_| {}),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
