//! `fruix query`.

use std::io::Write;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};

use crate::Outcome;
use crate::cli::QueryArgs;
use crate::query::{Answer, HostKeys, QueryOptions, Target, query};

/// Refuses a file name that ssh would not take as it is: it splits
/// option values at whitespace and quotes, unescapes backslashes, reads a
/// leading `#` as a comment, and expands `%` tokens, `${VAR}` and a
/// leading `~` in key and known_hosts file names, so such a name would
/// make it read another file than the one given.
pub(crate) fn ssh_safe(flag: &str, path: &std::path::Path) -> Result<()> {
    let Some(s) = path.to_str() else {
        bail!("{flag}: {}: not a UTF-8 file name", path.display());
    };
    if let Some(c) = s
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '%' | '"' | '\'' | '$' | '\\'))
        .or_else(|| {
            s.starts_with(['~', '#'])
                .then_some(s.chars().next().unwrap_or('~'))
        })
    {
        bail!(
            "{flag}: {}: ssh cannot be given a file name with {c:?} in it as it is; \
             move or link the file elsewhere",
            path.display()
        );
    }
    Ok(())
}

/// Runs `fruix query`.
pub fn run(a: QueryArgs) -> Result<Outcome> {
    let target = Target::parse(&a.ssh).map_err(|e| anyhow!("--ssh: {e}"))?;
    if let Some(i) = &a.identity {
        if !i.is_file() {
            bail!("-i: {}: no such key file", i.display());
        }
        ssh_safe("-i", i)?;
    }
    let host_keys = match (a.known_hosts, a.any_host_key) {
        (Some(f), _) => {
            if !f.is_file() {
                bail!("--known-hosts: {}: no such file", f.display());
            }
            ssh_safe("--known-hosts", &f)?;
            HostKeys::File(f)
        }
        (None, true) => HostKeys::Any,
        (None, false) => HostKeys::User,
    };
    let opts = QueryOptions {
        target,
        identity: a.identity,
        wait: Duration::from_secs(a.wait),
        json: a.json,
        host_keys,
    };
    match query(&opts) {
        Answer::Report { text, status, .. } => {
            let mut out = std::io::stdout().lock();
            write!(out, "{text}")?;
            if !text.ends_with('\n') {
                writeln!(out)?;
            }
            Ok(if status == 0 {
                Outcome::Success
            } else {
                Outcome::Findings
            })
        }
        Answer::Unreachable(why) => bail!("not reachable: {why}"),
        Answer::Refused(why) => bail!("refused: {why}"),
    }
}
