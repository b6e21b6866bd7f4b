//! The agent's readiness report and its three forms: `key=value` lines
//! (`fruix-agent status`, `/run/fruix/ready`), a flat JSON object
//! (`status --json`), and the console's `fruix-reason:` and `fruix-ready:`
//! lines. The agent writes each with the `to_*` methods here; the host
//! (`fruix system vm`, `fruix query`) reads each with the `from_*`
//! functions and [`ConsoleWatch`] here. The serde form of [`Report`]
//! (outcome, fields as pairs, reasons, pending) is the agent's status
//! socket and `status.json`, and the `report` of `fruix system vm --json`
//! (where `pending` is always empty: the console does not carry it).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::FormatError;

pub use crate::console::{READY_PREFIX, REASON_PREFIX};
/// How many reasons go to the console before the ready line; the rest are
/// in the status report.
pub const CONSOLE_REASONS: usize = 10;

/// The outcome of the readiness checks, as cloud-init and systemd tell
/// them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Every check passed.
    Ready,
    /// A check that does not gate readiness failed.
    Degraded,
    /// A gating check failed.
    Failed,
    /// Checks are still running.
    Pending,
}

impl Outcome {
    /// The word in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ready => "ready",
            Outcome::Degraded => "degraded",
            Outcome::Failed => "failed",
            Outcome::Pending => "pending",
        }
    }

    /// The outcome a word names.
    pub fn parse(s: &str) -> Option<Outcome> {
        [
            Outcome::Ready,
            Outcome::Degraded,
            Outcome::Failed,
            Outcome::Pending,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }

    /// True when no further check can change it.
    pub fn is_final(self) -> bool {
        self != Outcome::Pending
    }

    /// True for `ready` and `degraded`, the outcomes a guest is usable in.
    pub fn is_usable(self) -> bool {
        matches!(self, Outcome::Ready | Outcome::Degraded)
    }
}

/// The report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The outcome.
    pub outcome: Outcome,
    /// `key=value` fields, in order, `ready_marker` first.
    pub fields: Vec<(String, String)>,
    /// Why the outcome is not `ready`, one line each.
    pub reasons: Vec<String>,
    /// Checks still pending.
    pub pending: Vec<String>,
}

/// The key that carries the outcome, first in every form.
pub const OUTCOME_KEY: &str = "ready_marker";

impl Report {
    /// A field's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `key=value` lines, then `reason=` lines, then `pending=` when checks
    /// are still running.
    pub fn to_lines(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.fields {
            s.push_str(&format!("{k}={v}\n"));
        }
        // A reason with a newline (a tool's whole stderr) stays one
        // line, as on the console, so that every line is KEY=VALUE.
        for r in &self.reasons {
            s.push_str(&format!("reason={}\n", r.replace('\n', " ")));
        }
        if !self.pending.is_empty() {
            s.push_str(&format!("pending={}\n", self.pending.join(",")));
        }
        s
    }

    /// The same as a flat JSON object: each field a string, `reasons` and
    /// `pending` arrays.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (k, v) in &self.fields {
            m.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
        m.insert("reasons".into(), serde_json::json!(self.reasons));
        m.insert("pending".into(), serde_json::json!(self.pending));
        serde_json::Value::Object(m)
    }

    /// The one console line: `fruix-ready: ready_marker=ready ...`.
    pub fn console_line(&self) -> String {
        let fields: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| format!("{k}={}", console_escape(v)))
            .collect();
        format!("{READY_PREFIX}{}", fields.join(" "))
    }

    /// What goes to the console at a final outcome: a `fruix-reason:` line
    /// for each of the first [`CONSOLE_REASONS`] reasons, then the ready
    /// line, each ending in a newline, so that it can be written at once.
    pub fn console_text(&self) -> String {
        let mut text = String::new();
        for r in self.reasons.iter().take(CONSOLE_REASONS) {
            text.push_str(&format!("{REASON_PREFIX}{}\n", r.replace('\n', " ")));
        }
        text.push_str(&self.console_line());
        text.push('\n');
        text
    }

    fn from_parts(
        what: &str,
        fields: Vec<(String, String)>,
        reasons: Vec<String>,
        pending: Vec<String>,
    ) -> Result<Report, FormatError> {
        let outcome = outcome_of(&fields).map_err(|message| FormatError::Line {
            what: what.to_owned(),
            line: 1,
            message,
        })?;
        Ok(Report {
            outcome,
            fields,
            reasons,
            pending,
        })
    }

    /// Reads [`Report::to_lines`]'s text; `what` names it in errors.
    pub fn from_lines(text: &str, what: &str) -> Result<Report, FormatError> {
        let mut fields = Vec::new();
        let mut reasons = Vec::new();
        let mut pending = Vec::new();
        for (i, l) in text.lines().enumerate() {
            // `lines` drops the '\r' of a "\r\n" but not of a last line
            // without its '\n', nor the ones before it: drop them all, so
            // that a value never ends in one and what `to_lines` writes
            // reads back the same (found by fuzzing,
            // tests/fuzz_regressions.rs).
            let l = l.trim_end_matches('\r');
            let Some((k, v)) = l.split_once('=') else {
                return Err(FormatError::Line {
                    what: what.to_owned(),
                    line: i + 1,
                    message: "expected KEY=VALUE".into(),
                });
            };
            match k {
                "reason" => reasons.push(v.to_owned()),
                "pending" => pending = v.split(',').map(str::to_owned).collect(),
                _ => fields.push((k.to_owned(), v.to_owned())),
            }
        }
        Self::from_parts(what, fields, reasons, pending)
    }

    /// Reads [`Report::to_json`]'s object. serde_json keeps its keys
    /// sorted, so the fields come back in key order, `ready_marker` first.
    pub fn from_json(text: &str, what: &str) -> Result<Report, FormatError> {
        let bad = |message: String| FormatError::Line {
            what: what.to_owned(),
            line: 1,
            message,
        };
        let v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let strings = |key: &str| -> Result<Vec<String>, FormatError> {
            match v.get(key) {
                None => Ok(Vec::new()),
                Some(a) => {
                    serde_json::from_value(a.clone()).map_err(|e| bad(format!("{key}: {e}")))
                }
            }
        };
        let mut fields = Vec::new();
        for (k, val) in &v {
            if k == "reasons" || k == "pending" {
                continue;
            }
            let s = val
                .as_str()
                .ok_or_else(|| bad(format!("{k}: not a string")))?;
            fields.push((k.clone(), s.to_owned()));
        }
        if let Some(i) = fields.iter().position(|(k, _)| k == OUTCOME_KEY) {
            let f = fields.remove(i);
            fields.insert(0, f);
        }
        Self::from_parts(what, fields, strings("reasons")?, strings("pending")?)
    }
}

/// The outcome `ready_marker` names among `fields`, or what is wrong.
fn outcome_of(fields: &[(String, String)]) -> Result<Outcome, String> {
    let (_, word) = fields
        .iter()
        .find(|(k, _)| k == OUTCOME_KEY)
        .ok_or_else(|| format!("no {OUTCOME_KEY}"))?;
    Outcome::parse(word).ok_or_else(|| format!("unknown outcome '{word}'"))
}

/// Follows a console log file as QEMU writes it and reads the agent's
/// report from it.
#[derive(Debug, Default)]
pub struct ConsoleWatch {
    offset: u64,
    partial: Vec<u8>,
    reasons: Vec<String>,
    tail: Vec<String>,
    host_keys: crate::hostkeys::HostKeyWatch,
    lines: crate::console::LineJoiner,
}

/// How many console lines are kept for a failure message.
const TAIL: usize = 15;

impl ConsoleWatch {
    /// Reads what was added since the last call; returns the agent's report
    /// when its ready line has come. Lines a kernel message cut are put
    /// together again first ([`crate::console`]).
    pub fn poll(&mut self, path: &Path) -> Option<Report> {
        let mut f = File::open(path).ok()?;
        f.seek(SeekFrom::Start(self.offset)).ok()?;
        let mut buf = Vec::new();
        let n = f.read_to_end(&mut buf).ok()?;
        self.offset += n as u64;
        self.partial.extend_from_slice(&buf);
        let mut found = None;
        while let Some(i) = self.partial.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = self.partial.drain(..=i).collect();
            let line = String::from_utf8_lossy(&raw)
                .trim_end_matches(['\r', '\n'])
                .to_owned();
            for line in self.lines.push(&line) {
                // A cut between `\r` and `\n` leaves the `\r` inside.
                if let Some(r) = self.feed(line.trim_end_matches('\r')) {
                    found = Some(r);
                }
            }
        }
        found
    }

    /// Takes one console line; returns the report when it is the ready
    /// line (with the reasons seen since the last one). A ready line whose
    /// outcome cannot be read (another message written into it) is a
    /// failed report with the fields it has, so that a boot ends at once
    /// rather than at its timeout.
    pub fn feed(&mut self, line: &str) -> Option<Report> {
        self.tail.push(line.to_owned());
        if self.tail.len() > TAIL {
            self.tail.remove(0);
        }
        self.host_keys.feed(line);
        // The agent's lines can follow other output on the same line
        // (kernel messages are not line-buffered with ours).
        if let Some(i) = line.find(REASON_PREFIX) {
            self.reasons
                .push(line[i + REASON_PREFIX.len()..].trim().to_owned());
            return None;
        }
        let i = line.find(READY_PREFIX)?;
        let fields: Vec<(String, String)> = line[i + READY_PREFIX.len()..]
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_owned(), console_unescape(v)))
            .collect();
        Some(Report {
            outcome: outcome_of(&fields).unwrap_or(Outcome::Failed),
            fields,
            reasons: std::mem::take(&mut self.reasons),
            pending: vec![],
        })
    }

    /// The last lines seen, for a failure message.
    pub fn tail(&self) -> &[String] {
        &self.tail
    }

    /// The guest's SSH host keys from the last whole key block the agent
    /// printed before its ready line, if one came.
    pub fn host_keys(&self) -> Option<&[crate::hostkeys::HostKey]> {
        self.host_keys.keys()
    }

    /// Why the last key block was not taken, if it was not.
    pub fn host_keys_error(&self) -> Option<&str> {
        self.host_keys.error()
    }
}

/// A value on the ready line, whose fields are split at spaces: `%` and
/// space as `%25` and `%20` (a switch's reason has spaces).
fn console_escape(v: &str) -> String {
    v.replace('%', "%25").replace(' ', "%20")
}

/// The value [`console_escape`] wrote.
fn console_unescape(v: &str) -> String {
    v.replace("%20", " ").replace("%25", "%")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            outcome: Outcome::Failed,
            fields: vec![
                ("ready_marker".into(), "failed".into()),
                ("boot_mode".into(), "shepherd-pid1".into()),
                ("store_verify".into(), "failed".into()),
            ],
            reasons: vec!["store: content-changed /frx/store/x/a".into()],
            pending: vec!["guile-module-smoke".into(), "sshd".into()],
        }
    }

    #[test]
    fn lines_round_trip() {
        let r = sample();
        let text = r.to_lines();
        assert_eq!(
            text,
            "ready_marker=failed\nboot_mode=shepherd-pid1\nstore_verify=failed\n\
             reason=store: content-changed /frx/store/x/a\npending=guile-module-smoke,sshd\n"
        );
        assert_eq!(Report::from_lines(&text, "status").unwrap(), r);
    }

    #[test]
    fn a_reason_of_two_lines_stays_one_line_and_reads_back() {
        let mut r = sample();
        r.reasons = vec!["herd status exited with 1: first\nsecond".into()];
        let text = r.to_lines();
        assert!(
            text.contains("reason=herd status exited with 1: first second\n"),
            "{text}"
        );
        let back = Report::from_lines(&text, "status").unwrap();
        assert_eq!(back.outcome, Outcome::Failed);
        assert_eq!(back.reasons, ["herd status exited with 1: first second"]);
    }

    #[test]
    fn json_round_trips_in_key_order() {
        let r = sample();
        let back = Report::from_json(&r.to_json().to_string(), "status").unwrap();
        let mut sorted = r.fields.clone();
        sorted[1..].sort();
        assert_eq!(back.fields, sorted);
        assert_eq!(
            (back.outcome, &back.reasons, &back.pending),
            (r.outcome, &r.reasons, &r.pending)
        );
    }

    #[test]
    fn console_round_trips_after_other_output() {
        let r = sample();
        let mut w = ConsoleWatch::default();
        assert_eq!(w.feed("[    3.2] Run /init as init process"), None);
        let mut got = None;
        for l in r.console_text().lines() {
            got = w.feed(&format!("[   12.0] {l}"));
        }
        let got = got.unwrap();
        assert_eq!(
            (got.outcome, &got.fields, &got.reasons),
            (r.outcome, &r.fields, &r.reasons)
        );
        assert!(got.pending.is_empty(), "the console does not carry pending");
        assert_eq!(w.tail().len(), 3);
    }

    #[test]
    fn console_carries_ten_reasons_on_one_line_each() {
        let mut r = sample();
        r.reasons = (0..12).map(|i| format!("r{i}\nsecond")).collect();
        let text = r.console_text();
        assert_eq!(text.lines().count(), 11);
        assert_eq!(text.lines().next(), Some("fruix-reason: r0 second"));
    }

    #[test]
    fn a_garbled_ready_line_is_a_failed_report_with_its_reasons() {
        let mut w = ConsoleWatch::default();
        assert_eq!(w.feed("fruix-reason: sshd: port 22: refused"), None);
        let r = w
            .feed("fruix-ready: ready_ma[  9.1] virtio rker=ready x=1")
            .unwrap();
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(r.get("x"), Some("1"));
        assert_eq!(r.reasons, ["sshd: port 22: refused"]);
    }

    #[test]
    fn follows_a_file_written_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("console.log");
        let mut w = ConsoleWatch::default();
        assert_eq!(w.poll(&p), None, "no file yet");
        std::fs::write(&p, "boot\nfruix-ready: ready_marker=re").unwrap();
        assert_eq!(w.poll(&p), None, "half a line");
        std::fs::write(&p, "boot\nfruix-ready: ready_marker=ready x=1\n").unwrap();
        let r = w.poll(&p).unwrap();
        assert!(r.outcome.is_usable());
        assert_eq!(r.get("x"), Some("1"));
    }

    /// A kernel message cut into the agent's output at any byte (printk
    /// writes around the tty): the host keys and the report still come
    /// through whole. CI lost a key block to such a cut.
    #[test]
    fn key_block_and_ready_line_survive_a_kernel_message_at_any_byte() {
        let key = crate::HostKey::parse(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEOB2N+37FzU+spOOcsTWo6nCX5sEdojXO4y4Qmq8vEJ root@guest",
            "k",
        )
        .unwrap();
        let r = sample();
        let lf = crate::hostkeys::console_block(std::slice::from_ref(&key), "root@guest")
            + &r.console_text();
        // A Linux console writes CR LF.
        let crlf = lf.replace('\n', "\r\n");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("console.log");
        for (text, eol) in [(&lf, "\n"), (&crlf, "\r\n")] {
            let kernel = format!("[   21.412345] random: crng init done{eol}");
            for at in 0..=text.len() {
                let console = format!("boot{eol}{}{kernel}{}", &text[..at], &text[at..]);
                std::fs::write(&p, &console).unwrap();
                let mut w = ConsoleWatch::default();
                let got = w
                    .poll(&p)
                    .unwrap_or_else(|| panic!("no report, cut at {at}"));
                assert_eq!(got.fields, r.fields, "cut at {at}");
                assert_eq!(got.reasons, r.reasons, "cut at {at}");
                assert_eq!(
                    w.host_keys(),
                    Some(std::slice::from_ref(&key)),
                    "cut at {at}: {:?}",
                    w.host_keys_error()
                );
            }
        }
    }

    #[test]
    fn unreadable_reports_are_named() {
        let e = |t: &str| Report::from_lines(t, "ssh guest").unwrap_err().to_string();
        assert_eq!(
            e("bash: not found"),
            "ssh guest: line 1: expected KEY=VALUE"
        );
        assert_eq!(e("x=1\n"), "ssh guest: line 1: no ready_marker");
        assert_eq!(
            e("ready_marker=maybe\n"),
            "ssh guest: line 1: unknown outcome 'maybe'"
        );
        assert_eq!(
            Report::from_json("{\"ready_marker\":1}", "q")
                .unwrap_err()
                .to_string(),
            "q: line 1: ready_marker: not a string"
        );
    }
}
