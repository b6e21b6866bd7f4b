//! Console lines as the agent wrote them, out of a serial console where
//! the kernel's messages cut into them.
//!
//! The kernel writes its messages straight to the UART (`printk` goes
//! around the tty's buffer), so a message can land between any two bytes
//! of a line a program wrote: `-----BEGIN SSH HO[   21.4] random: crng
//! init done` on one line, `ST KEY FINGERPRINTS-----` on the next. Read
//! as they come, such lines lose the agent's markers (a whole key block
//! missed, and with it the host keys to pin). [`LineJoiner`] takes the
//! kernel's message out and puts the two halves together again.

/// The console line the agent prints once per final outcome (defined
/// here, where console lines are read, and re-exported by `report`).
pub const READY_PREFIX: &str = "fruix-ready: ";
/// The console lines before it that say why.
pub const REASON_PREFIX: &str = "fruix-reason: ";

/// Rejoins program lines that kernel messages split; see the module doc.
#[derive(Debug, Default)]
pub struct LineJoiner {
    /// The start of a program line cut by a kernel message, waiting for
    /// its rest on a later line.
    fragment: String,
}

/// A line waiting for its rest is given up past this (then passed on as
/// it is): a line the kernel ended is not waited for forever.
const MAX_FRAGMENT: usize = 64 * 1024;

impl LineJoiner {
    /// Takes one console line (without its newline); returns the lines it
    /// completes, in order: a kernel message as a line of its own, a
    /// program line once whole.
    pub fn push(&mut self, line: &str) -> Vec<String> {
        // A line that starts as one of the agent's own does not continue
        // a cut one, cut itself or not: the fragment was something else's
        // (a stamp-like text in a line, a prompt without a newline),
        // passed on alone, so that it can never swallow a ready line.
        let mut out = Vec::new();
        if !self.fragment.is_empty() && kernel_stamp(line) != Some(0) && starts_agent_line(line) {
            out.push(std::mem::take(&mut self.fragment));
        }
        out.extend(self.join(line));
        out
    }

    /// [`push`](Self::push) without the agent-line rule.
    fn join(&mut self, line: &str) -> Vec<String> {
        match kernel_stamp(line) {
            Some(0) => vec![line.to_owned()],
            Some(at) => {
                self.fragment.push_str(&line[..at]);
                let mut out = Vec::new();
                if self.fragment.len() > MAX_FRAGMENT {
                    out.push(std::mem::take(&mut self.fragment));
                }
                out.push(line[at..].to_owned());
                out
            }
            None => {
                let mut whole = std::mem::take(&mut self.fragment);
                whole.push_str(line);
                vec![whole]
            }
        }
    }
}

/// Whether `line` starts as the agent's console lines do (its ready and
/// reason lines, the host key blocks' markers).
fn starts_agent_line(line: &str) -> bool {
    use crate::hostkeys::{FINGERPRINTS_BEGIN, FINGERPRINTS_END, KEYS_BEGIN, KEYS_END};
    [
        READY_PREFIX,
        REASON_PREFIX,
        FINGERPRINTS_BEGIN,
        FINGERPRINTS_END,
        KEYS_BEGIN,
        KEYS_END,
    ]
    .iter()
    .any(|m| line.starts_with(m))
}

/// Where the first kernel time stamp (`[` spaces, seconds, `.`, six
/// digits, `]`, as `printk` starts each line) begins in `line`.
pub fn kernel_stamp(line: &str) -> Option<usize> {
    let b = line.as_bytes();
    (0..b.len()).find(|&i| b[i] == b'[' && stamp_at(&b[i + 1..]))
}

/// Whether `b` starts with the rest of a time stamp after its `[`.
fn stamp_at(b: &[u8]) -> bool {
    let mut i = b.iter().take_while(|c| **c == b' ').count();
    let secs = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    if secs == 0 {
        return false;
    }
    i += secs;
    if b.get(i) != Some(&b'.') {
        return false;
    }
    i += 1;
    let micros = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    micros == 6 && b.get(i + 6) == Some(&b']')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(lines: &[&str]) -> Vec<String> {
        let mut j = LineJoiner::default();
        lines.iter().flat_map(|l| j.push(l)).collect()
    }

    #[test]
    fn stamps_are_found_where_printk_puts_them() {
        assert_eq!(
            kernel_stamp("[   10.255348] random: crng init done"),
            Some(0)
        );
        assert_eq!(kernel_stamp("abc[12345.000001] x"), Some(3));
        assert_eq!(kernel_stamp("[ 1.23] not six digits"), None);
        assert_eq!(kernel_stamp("[    .123456] no seconds"), None);
        assert_eq!(kernel_stamp("[1.1234567] seven digits"), None);
        assert_eq!(kernel_stamp("[1.123456 no bracket"), None);
        assert_eq!(kernel_stamp("reason=[x] [y]"), None);
        assert_eq!(kernel_stamp("ends with ["), None);
    }

    #[test]
    fn a_line_cut_by_a_kernel_message_is_whole_again() {
        assert_eq!(
            join(&[
                "-----BEGIN SSH HO[   21.412345] random: crng init done",
                "ST KEY FINGERPRINTS-----",
            ]),
            [
                "[   21.412345] random: crng init done",
                "-----BEGIN SSH HOST KEY FINGERPRINTS-----"
            ]
        );
    }

    #[test]
    fn several_messages_in_one_line_and_a_cut_at_its_end() {
        assert_eq!(
            join(&[
                "fruix-ready: ready_mar[    8.310587] clocksource: watchdog",
                "[    8.314537] clocksource: second line",
                "ker=ready x=1[    9.000000] third",
                "",
                "next",
            ]),
            [
                "[    8.310587] clocksource: watchdog",
                "[    8.314537] clocksource: second line",
                "[    9.000000] third",
                "fruix-ready: ready_marker=ready x=1",
                "next",
            ]
        );
    }

    #[test]
    fn a_stamp_inside_a_line_never_swallows_the_agents_next_line() {
        assert_eq!(
            join(&[
                "fruix-reason: probe dmesg: [    3.000000] oops",
                "fruix-ready: ready_marker=failed x=1",
            ]),
            [
                "[    3.000000] oops",
                "fruix-reason: probe dmesg: ",
                "fruix-ready: ready_marker=failed x=1",
            ]
        );
        // The agent's line cut itself.
        assert_eq!(
            join(&[
                "fruix-reason: probe dmesg: [    3.000000] oops",
                "fruix-ready: ready_marker=fai[   21.412345] random: crng init done",
                "led x=1",
            ]),
            [
                "[    3.000000] oops",
                "fruix-reason: probe dmesg: ",
                "[   21.412345] random: crng init done",
                "fruix-ready: ready_marker=failed x=1",
            ]
        );
        assert_eq!(
            join(&[
                "login: [   21.412345] random: crng init done",
                "-----BEGIN SSH HOST KEY KEYS-----"
            ]),
            [
                "[   21.412345] random: crng init done",
                "login: ",
                "-----BEGIN SSH HOST KEY KEYS-----"
            ]
        );
    }

    #[test]
    fn lines_without_kernel_messages_pass_unchanged() {
        let lines = ["Service sshd has been started.", "", "[ok] not a stamp"];
        assert_eq!(join(&lines), lines);
    }

    #[test]
    fn a_fragment_never_grows_without_bound() {
        let long = "x".repeat(MAX_FRAGMENT);
        let cut = format!("{long}y[    1.000000] k");
        let out = join(&[&cut]);
        assert_eq!(out, [format!("{long}y"), "[    1.000000] k".to_owned()]);
    }
}
