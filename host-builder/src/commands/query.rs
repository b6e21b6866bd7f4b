//! `fruix query`.

use std::io::Write;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};

use crate::Outcome;
use crate::cli::QueryArgs;
use crate::query::{Answer, HostKeys, QueryOptions, Target, query};

/// Runs `fruix query`.
pub fn run(a: QueryArgs) -> Result<Outcome> {
    let target = Target::parse(&a.ssh).map_err(|e| anyhow!("--ssh: {e}"))?;
    if let Some(i) = &a.identity
        && !i.is_file()
    {
        bail!("-i: {}: no such key file", i.display());
    }
    let host_keys = match (a.known_hosts, a.any_host_key) {
        (Some(f), _) => {
            if !f.is_file() {
                bail!("--known-hosts: {}: no such file", f.display());
            }
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
