//! The guest's SSH host keys as they cross the host/guest line: the agent
//! prints them on the serial console in the block cloud-init prints (so
//! that tooling which scrapes consoles for it reads ours too), its report
//! carries their SHA256 fingerprints, and the host reads the block back
//! to pin the keys in a known_hosts file.
//!
//! The serial console is the trusted channel here: whoever can write on
//! it already owns the guest, while the network port is whoever answers.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha256};

use crate::error::FormatError;

/// First line of the fingerprint block.
pub const FINGERPRINTS_BEGIN: &str = "-----BEGIN SSH HOST KEY FINGERPRINTS-----";
/// Last line of the fingerprint block.
pub const FINGERPRINTS_END: &str = "-----END SSH HOST KEY FINGERPRINTS-----";
/// First line of the key block.
pub const KEYS_BEGIN: &str = "-----BEGIN SSH HOST KEY KEYS-----";
/// Last line of the key block.
pub const KEYS_END: &str = "-----END SSH HOST KEY KEYS-----";

/// The key types activation makes, by the name in
/// `/etc/ssh/ssh_host_TYPE_key.pub` and in the report's
/// `ssh_host_key_TYPE` field.
pub const KEY_TYPES: [&str; 2] = ["ed25519", "ecdsa"];

/// One public host key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostKey {
    /// The algorithm, as OpenSSH names it (`ssh-ed25519`,
    /// `ecdsa-sha2-nistp256`).
    pub algorithm: String,
    /// The key blob (the second word of a `.pub` file), decoded.
    pub blob: Vec<u8>,
}

impl HostKey {
    /// Reads a `.pub` line (`ALGORITHM BASE64 [COMMENT]`) or a key-block
    /// line. The blob must name the same algorithm it is given under.
    pub fn parse(line: &str, what: &str) -> Result<HostKey, FormatError> {
        let bad = |message: String| FormatError::Line {
            what: what.to_owned(),
            line: 1,
            message,
        };
        let mut words = line.split_whitespace();
        let (Some(algorithm), Some(b64)) = (words.next(), words.next()) else {
            return Err(bad("not 'ALGORITHM BASE64 [COMMENT]'".into()));
        };
        let blob = STANDARD
            .decode(b64)
            .map_err(|e| bad(format!("key of {algorithm}: not base64: {e}")))?;
        // The blob starts with its algorithm as an SSH string.
        let named = blob
            .get(..4)
            .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
            .and_then(|n| blob.get(4..4 + n));
        if named != Some(algorithm.as_bytes()) {
            return Err(bad(format!("key blob is not a {algorithm} key")));
        }
        Ok(HostKey {
            algorithm: algorithm.to_owned(),
            blob,
        })
    }

    /// `SHA256:` and the unpadded base64 of the blob's digest, as
    /// `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        format!(
            "SHA256:{}",
            STANDARD_NO_PAD.encode(Sha256::digest(&self.blob))
        )
    }

    /// The type word of [`KEY_TYPES`] (`ed25519`, `ecdsa`), if one.
    pub fn key_type(&self) -> Option<&'static str> {
        match self.algorithm.as_str() {
            "ssh-ed25519" => Some("ed25519"),
            a if a.starts_with("ecdsa-sha2-") => Some("ecdsa"),
            _ => None,
        }
    }

    /// The report field that carries this key's fingerprint.
    pub fn report_key(&self) -> Option<String> {
        self.key_type().map(report_key)
    }

    /// `ALGORITHM BASE64`, the form of `.pub` files and known_hosts.
    pub fn public_line(&self) -> String {
        format!("{} {}", self.algorithm, STANDARD.encode(&self.blob))
    }

    /// The line `ssh-keygen -l` prints for the key: bits, fingerprint,
    /// comment, type in capitals.
    fn fingerprint_line(&self, comment: &str) -> String {
        let (bits, kind) = match self.algorithm.as_str() {
            "ssh-ed25519" => ("256", "ED25519"),
            "ecdsa-sha2-nistp384" => ("384", "ECDSA"),
            "ecdsa-sha2-nistp521" => ("521", "ECDSA"),
            a if a.starts_with("ecdsa-sha2-") => ("256", "ECDSA"),
            _ => ("0", "UNKNOWN"),
        };
        format!("{bits} {} {comment} ({kind})", self.fingerprint())
    }

    /// The known_hosts line pinning this key for `host:port` (OpenSSH
    /// writes `[host]:port` for any port but 22).
    pub fn known_hosts_line(&self, host: &str, port: u16) -> String {
        format!("{} {}", known_hosts_name(host, port), self.public_line())
    }
}

/// How OpenSSH names `host:port` in known_hosts and its messages: the
/// bare host for port 22, `[host]:port` for any other.
pub fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

/// The report field for key type `t` (`ssh_host_key_ed25519`).
pub fn report_key(t: &str) -> String {
    format!("ssh_host_key_{t}")
}

/// The console text announcing `keys`: the fingerprint block, then the
/// key block, each line ending in a newline, to be written at once.
/// `comment` stands where `ssh-keygen -l` prints the key's comment
/// (`root@HOST`).
pub fn console_block(keys: &[HostKey], comment: &str) -> String {
    let mut s = format!("{FINGERPRINTS_BEGIN}\n");
    for k in keys {
        s.push_str(&k.fingerprint_line(comment));
        s.push('\n');
    }
    s.push_str(FINGERPRINTS_END);
    s.push('\n');
    s.push_str(KEYS_BEGIN);
    s.push('\n');
    for k in keys {
        s.push_str(&format!("{} {comment}\n", k.public_line()));
    }
    s.push_str(KEYS_END);
    s.push('\n');
    s
}

/// Reads the blocks of [`console_block`] from console lines fed one by
/// one (lines may carry other output before the block's text). A key
/// block counts only when every key in it matches a fingerprint of the
/// block before it: a console line garbled by other output loses the
/// block rather than pinning a wrong key.
#[derive(Debug, Default)]
pub struct HostKeyWatch {
    state: BlockState,
    fingerprints: Vec<String>,
    keys: Vec<HostKey>,
    /// Why the block being read cannot be taken, once a key line in it
    /// could not be read.
    bad: Option<String>,
    found: Option<Vec<HostKey>>,
    error: Option<String>,
}

/// More keys than any guest has: a block that goes on past this is not
/// the agent's.
const MAX_KEYS: usize = 8;

#[derive(Debug, Default, PartialEq, Eq)]
enum BlockState {
    #[default]
    Outside,
    Fingerprints,
    BetweenBlocks,
    Keys,
}

impl HostKeyWatch {
    /// Takes one console line.
    pub fn feed(&mut self, line: &str) {
        let at = |marker: &str| line.contains(marker);
        match self.state {
            _ if at(FINGERPRINTS_BEGIN) => {
                self.state = BlockState::Fingerprints;
                self.fingerprints.clear();
                self.keys.clear();
                self.bad = None;
            }
            BlockState::Fingerprints if at(FINGERPRINTS_END) => {
                self.state = BlockState::BetweenBlocks;
            }
            BlockState::Fingerprints => {
                if let Some(f) = line.split_whitespace().find(|w| w.starts_with("SHA256:"))
                    && self.fingerprints.len() < MAX_KEYS
                {
                    self.fingerprints.push(f.to_owned());
                }
            }
            BlockState::BetweenBlocks if at(KEYS_BEGIN) => self.state = BlockState::Keys,
            BlockState::Keys if at(KEYS_END) => {
                self.state = BlockState::Outside;
                let keys = std::mem::take(&mut self.keys);
                let unmatched = keys
                    .iter()
                    .find(|k| !self.fingerprints.contains(&k.fingerprint()));
                match unmatched {
                    _ if self.bad.is_some() => self.error = self.bad.take(),
                    _ if keys.is_empty() => self.error = Some("the key block is empty".into()),
                    Some(k) => {
                        self.error = Some(format!(
                            "{} key {} is not in the fingerprint block",
                            k.algorithm,
                            k.fingerprint()
                        ))
                    }
                    None => {
                        self.error = None;
                        self.found = Some(keys);
                    }
                }
            }
            BlockState::Keys => {
                // The key's text starts at its algorithm word.
                let text = line
                    .find("ssh-")
                    .into_iter()
                    .chain(line.find("ecdsa-"))
                    .min()
                    .map(|i| &line[i..]);
                // A key line that cannot be read loses the whole block: a
                // partial set of keys is never pinned. Lines without a key
                // (the kernel's, between ours) are passed over.
                match text.map(|t| HostKey::parse(t, "console key line")) {
                    Some(Ok(_)) if self.keys.len() == MAX_KEYS => {
                        let too_many = format!("more than {MAX_KEYS} keys in the key block");
                        self.bad.get_or_insert(too_many);
                    }
                    Some(Ok(k)) => self.keys.push(k),
                    Some(Err(e)) => {
                        self.bad.get_or_insert_with(|| crate::error::chain(&e));
                    }
                    None => {}
                }
            }
            BlockState::Outside | BlockState::BetweenBlocks => {}
        }
    }

    /// The keys of the last whole, consistent block, if one came.
    pub fn keys(&self) -> Option<&[HostKey]> {
        self.found.as_deref()
    }

    /// Why the last block was not taken, if it was not.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with `ssh-keygen -t ed25519` and `-t ecdsa`; fingerprints as
    // `ssh-keygen -l -f` printed them.
    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEOB2N+37FzU+spOOcsTWo6nCX5sEdojXO4y4Qmq8vEJ root@guest";
    const ED_FP: &str = "SHA256:3GG+7T8TFHpUGjaC2RPRGJbv9TE+moNWGxySnNXfNZI";
    const EC_FP: &str = "SHA256:OMp1sMNP73s2hB3d4BRigmoxagjOQDSm+vakNumEJ1w";
    const EC: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBCVKSdd1I/hbc8OKUahILesLC+uac666VaxbMWnmYENW3jOo4BIjLsa3QrvIQay9nmlnWprPNkcYPYiLHoDKp7w= root@guest";

    fn keys() -> Vec<HostKey> {
        vec![
            HostKey::parse(ED, "ed").unwrap(),
            HostKey::parse(EC, "ec").unwrap(),
        ]
    }

    #[test]
    fn fingerprints_are_those_ssh_keygen_prints() {
        let k = keys();
        assert_eq!(k[0].fingerprint(), ED_FP);
        assert_eq!(k[1].fingerprint(), EC_FP);
        assert_eq!(k[0].report_key().as_deref(), Some("ssh_host_key_ed25519"));
        assert_eq!(k[1].report_key().as_deref(), Some("ssh_host_key_ecdsa"));
        assert_eq!(
            k[0].known_hosts_line("127.0.0.1", 10022),
            format!("[127.0.0.1]:10022 {}", ED.trim_end_matches(" root@guest"))
        );
        assert_eq!(
            k[0].known_hosts_line("guest", 22),
            format!("guest {}", ED.trim_end_matches(" root@guest"))
        );
    }

    #[test]
    fn bad_keys_are_refused() {
        let e = HostKey::parse("ssh-ed25519 !!!", "K").unwrap_err();
        assert_eq!(
            e.to_string(),
            "K: line 1: key of ssh-ed25519: not base64: Invalid symbol 33, offset 0."
        );
        let ec_blob = EC.split_whitespace().nth(1).unwrap();
        let e = HostKey::parse(&format!("ssh-ed25519 {ec_blob}"), "K").unwrap_err();
        assert_eq!(
            e.to_string(),
            "K: line 1: key blob is not a ssh-ed25519 key"
        );
        let e = HostKey::parse("ssh-ed25519", "K").unwrap_err();
        assert_eq!(e.to_string(), "K: line 1: not 'ALGORITHM BASE64 [COMMENT]'");
    }

    #[test]
    fn the_console_block_is_cloud_inits_and_reads_back() {
        let text = console_block(&keys(), "root@guest");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], FINGERPRINTS_BEGIN);
        assert_eq!(lines[1], format!("256 {ED_FP} root@guest (ED25519)"));
        assert_eq!(lines[2], format!("256 {EC_FP} root@guest (ECDSA)"));
        assert_eq!(lines[3], FINGERPRINTS_END);
        assert_eq!(lines[4], KEYS_BEGIN);
        assert_eq!(lines[5], ED);
        assert_eq!(lines[6], EC);
        assert_eq!(lines[7], KEYS_END);
        let mut w = HostKeyWatch::default();
        for l in text.lines() {
            // Kernel output may precede the agent's text on a line.
            w.feed(&format!("[   3.1] {l}"));
        }
        assert_eq!(w.keys(), Some(&keys()[..]));
        assert_eq!(w.error(), None);
    }

    #[test]
    fn a_garbled_key_line_loses_the_whole_block() {
        let good = console_block(&keys(), "root@guest");
        let text = good.replace("ecdsa-sha2-nistp256 AAAAE2", "ecdsa-sha2-nistp256 AAAA!E2");
        let mut w = HostKeyWatch::default();
        text.lines().for_each(|l| w.feed(l));
        assert_eq!(w.keys(), None, "the good ed25519 key alone is not pinned");
        assert_eq!(
            w.error(),
            Some(
                "console key line: line 1: key of ecdsa-sha2-nistp256: not base64: \
                 Invalid symbol 33, offset 4."
            )
        );
        // A whole block after it is taken; a line of the kernel's inside
        // it is passed over.
        let good = good.replace(
            KEYS_END,
            &format!("[  9.1] random: crng init done\n{KEYS_END}"),
        );
        good.lines().for_each(|l| w.feed(l));
        assert_eq!(w.keys(), Some(&keys()[..]));
        assert_eq!(w.error(), None);
    }

    #[test]
    fn a_key_without_its_fingerprint_is_not_taken() {
        let text = console_block(&keys(), "root@guest").replace(ED_FP, "SHA256:other");
        let mut w = HostKeyWatch::default();
        text.lines().for_each(|l| w.feed(l));
        assert_eq!(w.keys(), None);
        assert_eq!(
            w.error(),
            Some(format!("ssh-ed25519 key {ED_FP} is not in the fingerprint block").as_str())
        );
    }
}
