//! Progress of long work, on stderr: a spinner per step on a terminal, a
//! plain line per step otherwise (CI logs), nothing with `--quiet`.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Nothing.
    Quiet,
    /// One line per step.
    Lines,
    /// Spinners.
    Bars,
}

/// The progress display of one command.
#[derive(Debug)]
pub struct Progress {
    mode: Mode,
}

impl Progress {
    /// Chooses spinners on a terminal, lines otherwise; `quiet` wins.
    pub fn new(quiet: bool) -> Progress {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        };
        Progress { mode }
    }

    /// A display that shows nothing.
    pub fn quiet() -> Progress {
        Progress { mode: Mode::Quiet }
    }

    /// Prints one line (unless quiet).
    pub fn line(&self, msg: &str) {
        if self.mode != Mode::Quiet {
            eprintln!("fruix: {msg}");
        }
    }

    /// Starts a step.
    pub fn step(&self, msg: &str) -> Step {
        let bar = match self.mode {
            Mode::Bars => {
                let b = ProgressBar::new_spinner();
                b.set_style(
                    ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                b.enable_steady_tick(Duration::from_millis(120));
                b.set_message(msg.to_owned());
                Some(b)
            }
            Mode::Lines => {
                eprintln!("fruix: {msg}");
                None
            }
            Mode::Quiet => None,
        };
        Step {
            bar,
            mode: self.mode,
        }
    }
}

/// One step under way.
#[derive(Debug)]
pub struct Step {
    bar: Option<ProgressBar>,
    mode: Mode,
}

impl Step {
    /// Updates the step's message (spinners only: lines would flood a log).
    pub fn message(&self, msg: &str) {
        if let Some(b) = &self.bar {
            b.set_message(msg.to_owned());
        }
    }

    /// A line that stays, above the spinner.
    pub fn note(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(format!("fruix: {msg}")),
            None if self.mode != Mode::Quiet => eprintln!("fruix: {msg}"),
            None => {}
        }
    }

    /// Ends the step with a final line.
    pub fn finish(self, msg: &str) {
        match &self.bar {
            Some(b) => b.finish_with_message(msg.to_owned()),
            None if self.mode != Mode::Quiet => eprintln!("fruix: {msg}"),
            None => {}
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if let Some(b) = &self.bar
            && !b.is_finished()
        {
            b.abandon();
        }
    }
}
