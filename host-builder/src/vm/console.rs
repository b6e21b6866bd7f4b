//! The guest's serial console, read as QEMU writes it to a file: the
//! agent's `fruix-reason:` lines and its `fruix-ready:` line.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The line the agent prints once per final outcome.
pub const READY_PREFIX: &str = "fruix-ready: ";
/// The lines before it that say why.
pub const REASON_PREFIX: &str = "fruix-reason: ";

/// The agent's report, as the console showed it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConsoleReport {
    /// `key=value` pairs of the ready line, in its order.
    pub fields: Vec<(String, String)>,
    /// The reasons printed before it.
    pub reasons: Vec<String>,
}

impl ConsoleReport {
    /// A field's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// True for `ready` and `degraded`, the outcomes a guest is usable in.
    pub fn is_ready(&self) -> bool {
        matches!(self.get("ready_marker"), Some("ready" | "degraded"))
    }

    /// The report as `key=value` lines, reasons last, as `fruix-agent
    /// status` prints it.
    pub fn to_lines(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.fields {
            s.push_str(&format!("{k}={v}\n"));
        }
        for r in &self.reasons {
            s.push_str(&format!("reason={r}\n"));
        }
        s
    }
}

/// Follows a console log file.
#[derive(Debug, Default)]
pub struct ConsoleWatch {
    offset: u64,
    partial: Vec<u8>,
    reasons: Vec<String>,
    tail: Vec<String>,
}

/// How many console lines are kept for a failure message.
const TAIL: usize = 15;

impl ConsoleWatch {
    /// Reads what was added since the last call; returns the agent's report
    /// when its ready line has come.
    pub fn poll(&mut self, path: &Path) -> Option<ConsoleReport> {
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
            if let Some(r) = self.feed(&line) {
                found = Some(r);
            }
        }
        found
    }

    /// Takes one console line.
    pub fn feed(&mut self, line: &str) -> Option<ConsoleReport> {
        self.tail.push(line.to_owned());
        if self.tail.len() > TAIL {
            self.tail.remove(0);
        }
        // The agent's lines can follow other output on the same line
        // (kernel messages are not line-buffered with ours).
        if let Some(i) = line.find(REASON_PREFIX) {
            self.reasons
                .push(line[i + REASON_PREFIX.len()..].trim().to_owned());
            return None;
        }
        let i = line.find(READY_PREFIX)?;
        let fields = line[i + READY_PREFIX.len()..]
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some(ConsoleReport {
            fields,
            reasons: std::mem::take(&mut self.reasons),
        })
    }

    /// The last lines seen, for a failure message.
    pub fn tail(&self) -> &[String] {
        &self.tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_ready_line_and_the_reasons_before_it() {
        let mut w = ConsoleWatch::default();
        assert_eq!(w.feed("[    3.2] Run /init as init process"), None);
        assert_eq!(
            w.feed("fruix-reason: store: content-changed /frx/store/x/a"),
            None
        );
        let r = w
            .feed("[   12.0] ok fruix-ready: ready_marker=failed boot_mode=shepherd-pid1 sshd_status=running")
            .unwrap();
        assert_eq!(r.get("ready_marker"), Some("failed"));
        assert_eq!(r.get("boot_mode"), Some("shepherd-pid1"));
        assert!(!r.is_ready());
        assert_eq!(r.reasons, vec!["store: content-changed /frx/store/x/a"]);
        assert_eq!(
            r.to_lines(),
            "ready_marker=failed\nboot_mode=shepherd-pid1\nsshd_status=running\nreason=store: content-changed /frx/store/x/a\n"
        );
        assert_eq!(w.tail().len(), 3);
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
        assert!(r.is_ready());
        assert_eq!(r.get("x"), Some("1"));
    }
}
