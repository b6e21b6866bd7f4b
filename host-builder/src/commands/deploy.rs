//! `fruix system deploy`, `fruix system generations`, `fruix system
//! rollback`: a running guest changed, or asked, over the pinned SSH
//! session.

use std::io::Write;

use anyhow::{Result, anyhow, bail};
use fruix_system::switch::{Phase, SwitchState};

use super::query::ssh_safe;
use super::request;
use crate::Outcome;
use crate::cli::{DeployArgs, RemoteArgs, SshArgs};
use crate::deploy::remote::{AGENT, Keepalive, Remote, last_line};
use crate::deploy::run::{self, DeployOptions, When};
use crate::progress::Progress;
use crate::query::{HostKeys, Target};

/// The guest of `--ssh`, with its key and pinned host keys checked.
fn remote(a: &SshArgs) -> Result<Remote> {
    let target = Target::parse(&a.ssh).map_err(|e| anyhow!("--ssh: {e}"))?;
    if let Some(i) = &a.identity {
        if !i.is_file() {
            bail!("-i: {}: no such key file", i.display());
        }
        ssh_safe("-i", i)?;
    }
    let host_keys = match &a.known_hosts {
        Some(f) => {
            if !f.is_file() {
                bail!("--known-hosts: {}: no such file", f.display());
            }
            ssh_safe("--known-hosts", f)?;
            HostKeys::File(f.clone())
        }
        None => HostKeys::User,
    };
    Ok(Remote {
        target,
        identity: a.identity.clone(),
        host_keys,
        control: None,
        keepalive: Keepalive::Steady,
    })
}

/// Prints how a switch ended and maps it to the exit status: 0
/// committed, 1 rolled back; a failed switch is an error (2).
fn report_switch(out: &mut dyn Write, host: &str, s: &SwitchState) -> Result<Outcome> {
    let g = |n: Option<u64>| n.map_or("none".to_owned(), |n| n.to_string());
    match s.phase {
        Phase::Committed => {
            writeln!(
                out,
                "{host}: committed generation {} ({})",
                g(s.generation),
                s.outcome.as_deref().unwrap_or("ready")
            )?;
            Ok(Outcome::Success)
        }
        Phase::RolledBack => {
            writeln!(
                out,
                "{host}: rolled back generation {}: {}",
                g(s.generation),
                s.reason.as_deref().unwrap_or("no reason recorded")
            )?;
            for l in &s.failed_checks {
                writeln!(out, "  failed: {l}")?;
            }
            writeln!(
                out,
                "{host}: generation {} is {} after the rollback",
                s.from_generation,
                s.outcome.as_deref().unwrap_or("unknown")
            )?;
            Ok(Outcome::Findings)
        }
        _ => bail!(
            "{host}: switch {} {}: {}",
            s.id,
            s.phase.as_str(),
            s.reason.as_deref().unwrap_or("no reason recorded")
        ),
    }
}

/// Runs `fruix system deploy`.
pub fn deploy(a: DeployArgs) -> Result<Outcome> {
    let json = a.build.json;
    let progress = Progress::new(a.build.quiet || json);
    let opts = DeployOptions {
        request: request(&a.build)?,
        remote: remote(&a.ssh)?,
        confirm_timeout: a.confirm_timeout,
        dry_run: a.dry_run,
        when: if a.reboot {
            When::Reboot
        } else if a.boot {
            When::Boot
        } else {
            When::Live
        },
    };
    let host = opts.remote.target.known_hosts_name();
    let quiet = a.build.quiet;
    let done = run::deploy(&opts, &progress, &mut |line| {
        if !quiet {
            eprintln!("{host}: {line}");
        }
    })?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(&done)?)?;
    } else if a.dry_run {
        writeln!(
            out,
            "{host}: would send {} of {} items ({} file bytes)",
            done.missing, done.items, done.missing_file_bytes
        )?;
        if done.missing > 1 {
            writeln!(
                out,
                "{host}: note: the preview reads the closure from the guest's store, which lacks {} of its items: what they bring to /etc is not shown",
                done.missing - 1
            )?;
        }
        match &done.preview {
            Some(p) => {
                for c in p["activation"].as_array().into_iter().flatten() {
                    writeln!(
                        out,
                        "{host}: would: {}: {}",
                        c[0].as_str().unwrap_or(""),
                        c[1].as_str().unwrap_or("")
                    )?;
                }
                for verb in ["start", "stop", "restart"] {
                    for n in p["services"][verb].as_array().into_iter().flatten() {
                        writeln!(
                            out,
                            "{host}: would {verb} service {}",
                            n.as_str().unwrap_or("")
                        )?;
                    }
                }
            }
            None => writeln!(out, "{host}: the guest's preview was not readable")?,
        }
    } else {
        writeln!(
            out,
            "{host}: sent {} of {} items ({} bytes compressed, {} file bytes)",
            done.missing, done.items, done.sent_bytes, done.missing_file_bytes
        )?;
    }
    if let Some(staged) = &done.boot {
        return report_boot(&mut out, &host, json, staged, done.rebooted.as_ref());
    }
    match &done.switch {
        Some(s) if json => Ok(match s.phase {
            Phase::Committed => Outcome::Success,
            Phase::RolledBack => Outcome::Findings,
            _ => bail!("{host}: switch {} failed", s.id),
        }),
        Some(s) => report_switch(&mut out, &host, s),
        None => Ok(Outcome::Success),
    }
}

/// Says what `--boot` and `--reboot` did; exit 1 when the reboot came
/// up in another generation than the new one, or not ready.
fn report_boot(
    out: &mut dyn Write,
    host: &str,
    json: bool,
    staged: &crate::deploy::reboot::Staged,
    rebooted: Option<&crate::deploy::reboot::Rebooted>,
) -> Result<Outcome> {
    let Some(r) = rebooted else {
        if !json {
            writeln!(
                out,
                "{host}: generation {} is tried at the next boot (entry {})",
                staged.generation, staged.entry
            )?;
        }
        return Ok(Outcome::Success);
    };
    let booted = r.booted_generation.map_or("none".into(), |g| g.to_string());
    if r.came_up_in(staged.generation) {
        if !json {
            writeln!(
                out,
                "{host}: rebooted into generation {booted}: {} (entry {}, {:.1} s)",
                r.ready_marker, r.boot_entry, r.seconds
            )?;
        }
        return Ok(Outcome::Success);
    }
    if !json {
        match r.boot_fallback_from {
            Some(from) => writeln!(
                out,
                "{host}: generation {from} failed at boot ({} tries); the guest fell back to generation {booted}: {}",
                r.boot_tries_failed, r.ready_marker
            )?,
            None => writeln!(
                out,
                "{host}: rebooted into generation {booted}, not {}: {}",
                staged.generation, r.ready_marker
            )?,
        }
    }
    Ok(Outcome::Findings)
}

/// Runs `fruix system generations`.
pub fn generations(a: RemoteArgs) -> Result<Outcome> {
    let r = remote(&a.ssh)?;
    let cmd = format!("{AGENT} generations{}", if a.json { " --json" } else { "" });
    let out = r.run(&cmd, None)?;
    if out.code != 0 {
        bail!(
            "{}: fruix-agent generations exited {}: {}",
            r.target.known_hosts_name(),
            out.code,
            last_line(&out.stderr)
        );
    }
    write!(std::io::stdout().lock(), "{}", out.stdout)?;
    Ok(Outcome::Success)
}

/// Runs `fruix system rollback`.
pub fn rollback(a: RemoteArgs) -> Result<Outcome> {
    let r = remote(&a.ssh)?;
    let host = r.target.known_hosts_name();
    let cmd = format!(
        "{AGENT} rollback --json --confirm-timeout {}",
        a.confirm_timeout
    );
    let end = run::follow(&r, &host, &cmd, a.confirm_timeout, &mut |line| {
        eprintln!("{host}: {line}");
    })?;
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(
            out,
            "{}",
            String::from_utf8_lossy(&end.to_json()).trim_end()
        )?;
        return Ok(match end.phase {
            Phase::Committed => Outcome::Success,
            Phase::RolledBack => Outcome::Findings,
            _ => bail!("{host}: switch {} failed", end.id),
        });
    }
    report_switch(&mut out, &host, &end)
}
