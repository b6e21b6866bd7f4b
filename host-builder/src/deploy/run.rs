//! `fruix system deploy`, step by step: build the system, ask the guest in
//! one round trip which items of the closure it lacks, stream only those
//! (`fruix-agent store receive`), then start `fruix-agent switch` (which
//! runs detached in the guest and survives the connection) and follow it
//! until it ends, following it again by its id when the connection drops
//! (sshd may be restarted by the switch itself).

use std::time::{Duration, Instant};

use fruix_store::{ItemName, StoreRoot};
use fruix_system::switch::SwitchState;
use serde::Serialize;

use super::remote::{AGENT, Remote, RemoteError, last_line};
use super::stream;
use crate::pipeline::{self, SystemRequest};
use crate::progress::Progress;

pub use super::error::DeployError;

/// What a deploy did, for `--json` and the summary.
#[derive(Clone, Debug, Serialize)]
pub struct Deployed {
    /// The system item's name.
    pub system: String,
    /// Items in the closure (the system item included).
    pub items: usize,
    /// Items the guest lacked.
    pub missing: usize,
    /// Bytes of regular files in them.
    pub missing_file_bytes: u64,
    /// Bytes sent over the connection (compressed stream).
    pub sent_bytes: u64,
    /// The switch's end (None for a dry run).
    pub switch: Option<SwitchState>,
    /// The guest's preview of the switch (dry run).
    pub preview: Option<serde_json::Value>,
    /// The generation made the next boot's first try (`--boot`,
    /// `--reboot`).
    pub boot: Option<super::reboot::Staged>,
    /// How the reboot went (`--reboot`).
    pub rebooted: Option<super::reboot::Rebooted>,
}

/// When the new generation takes over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Now: a live switch, gated on its readiness.
    Live,
    /// At the next boot: a counted boot entry, blessed by that boot's
    /// readiness.
    Boot,
    /// At a reboot made now, waited for.
    Reboot,
}

/// A deploy's choices.
#[derive(Clone, Debug)]
pub struct DeployOptions {
    /// What to build.
    pub request: SystemRequest,
    /// The guest.
    pub remote: Remote,
    /// Seconds the new generation has to become ready.
    pub confirm_timeout: u64,
    /// Plan only.
    pub dry_run: bool,
    /// When the new generation takes over.
    pub when: When,
}

/// Builds and deploys; `on_event` gets each progress line of the switch.
pub fn deploy(
    opts: &DeployOptions,
    progress: &Progress,
    on_event: &mut dyn FnMut(&str),
) -> Result<Deployed, DeployError> {
    let (_, mut built) = pipeline::system(&opts.request, progress)?;
    // Built: other builds into the same directory may go on meanwhile.
    built.unlock();
    let store = StoreRoot::new(opts.request.out.join("frx"));
    let system_name = built
        .system_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let system = ItemName::parse(&system_name)?;
    let closure_path = built.system_path.join(fruix_system::closure::CLOSURE);
    let text = std::fs::read_to_string(&closure_path).map_err(|source| {
        fruix_system::FormatError::Read {
            path: closure_path.clone(),
            source,
        }
    })?;
    let closure = fruix_system::closure::parse(&text, &closure_path.display().to_string())?;
    let mut names = vec![system.clone()];
    names.extend(closure.iter().map(|c| c.item.clone()));
    let guest_system = format!("/frx/store/{system}");
    let host = opts.remote.target.known_hosts_name();

    // One connection for every command below; without one (a socket path
    // ssh cannot bind, say), each command connects on its own. A refusal
    // (host key, authentication) is final.
    let master = match super::mux::Master::open(&opts.remote) {
        Ok(m) => Some(m),
        Err(e @ RemoteError::Refused(_)) => return Err(e.into()),
        Err(e) => {
            progress.line(&format!("no shared ssh connection ({e}); one per command"));
            None
        }
    };
    let remote = master.as_ref().map_or(&opts.remote, |m| m.remote());

    // One round trip: what the guest lacks.
    let step = progress.step("asking the guest which items it has");
    let cmd = format!(
        "{AGENT} store missing --json --system {guest_system} {}",
        names
            .iter()
            .map(ItemName::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = remote.run(&cmd, None)?;
    let missing = parse_missing(&out.stdout).ok_or_else(|| DeployError::Answer {
        host: host.clone(),
        what: "fruix-agent store missing".into(),
        text: last_line(if out.stderr.trim().is_empty() {
            &out.stdout
        } else {
            &out.stderr
        }),
    })?;
    let missing: Vec<ItemName> = names
        .iter()
        .filter(|n| missing.contains(&n.to_string()))
        .cloned()
        .collect();
    let (count, file_bytes) = stream::plan(&store, &missing)?;
    step.finish(&format!(
        "the guest lacks {count} of {} items ({file_bytes} file bytes)",
        names.len()
    ));
    let mut done = Deployed {
        system: system.to_string(),
        items: names.len(),
        missing: count,
        missing_file_bytes: file_bytes,
        sent_bytes: 0,
        switch: None,
        preview: None,
        boot: None,
        rebooted: None,
    };

    if opts.dry_run {
        // A system item the guest lacks goes with the question, alone, and
        // is previewed from a temporary directory: the store is not written.
        let streamed = missing.contains(&system);
        let cmd = format!(
            "{AGENT} switch --dry-run --json{} {guest_system}",
            if streamed { " --from-stdin" } else { "" }
        );
        let mut feed = |w: &mut dyn std::io::Write| {
            stream::write_stream(&store, std::slice::from_ref(&system), w, progress)
                .map(|_| ())
                .map_err(std::io::Error::other)
        };
        let out = remote.run(&cmd, if streamed { Some(&mut feed) } else { None })?;
        if out.code != 0 {
            return Err(DeployError::Answer {
                host,
                what: "fruix-agent switch --dry-run".into(),
                text: last_line(&out.stderr),
            });
        }
        let preview = serde_json::from_str(&out.stdout).map_err(|_| DeployError::Answer {
            host,
            what: "fruix-agent switch --dry-run".into(),
            text: last_line(&out.stdout),
        })?;
        done.preview = Some(preview);
        return Ok(done);
    }

    if !missing.is_empty() {
        let order = stream::order(&system, &missing);
        let mut sent = None;
        let mut feed = |w: &mut dyn std::io::Write| {
            let s =
                stream::write_stream(&store, &order, w, progress).map_err(std::io::Error::other)?;
            sent = Some(s.compressed);
            Ok(())
        };
        let out = remote.run(
            &format!("{AGENT} store receive --json --system {guest_system}"),
            Some(&mut feed),
        )?;
        if out.code != 0 {
            return Err(DeployError::Answer {
                host,
                what: "fruix-agent store receive".into(),
                text: last_line(&out.stderr),
            });
        }
        done.sent_bytes = sent.unwrap_or(0);
    }

    if opts.when != When::Live {
        let staged = super::reboot::stage(remote, &host, &guest_system)?;
        for c in &staged.changes {
            on_event(&format!("boot entries: {c}"));
        }
        on_event(&format!(
            "generation {} is tried at the next boot (entry {})",
            staged.generation, staged.entry
        ));
        if opts.when == When::Reboot {
            // Confirm timeout for the boot's readiness, and a margin for
            // the firmware and the tries a failing entry may take.
            let wait = Duration::from_secs(opts.confirm_timeout.min(86_400) + 900);
            done.rebooted = Some(super::reboot::reboot_and_wait(
                remote,
                &host,
                staged.generation,
                wait,
                on_event,
            )?);
        }
        done.boot = Some(staged);
        return Ok(done);
    }
    let end = switch(remote, &host, &guest_system, opts.confirm_timeout, on_event)?;
    done.switch = Some(end);
    Ok(done)
}

/// The names in `fruix-agent store missing --json`'s answer.
fn parse_missing(stdout: &str) -> Option<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).ok()?;
    v["missing"]
        .as_array()?
        .iter()
        .map(|x| x.as_str().map(str::to_owned))
        .collect()
}

/// Runs `fruix-agent ARGS` on the guest (a switch, a rollback) and follows
/// it to its end, by its id again when the connection drops, for as long
/// as the confirm timeout and a margin allow.
pub fn switch(
    remote: &Remote,
    host: &str,
    guest_system: &str,
    confirm_timeout: u64,
    on_event: &mut dyn FnMut(&str),
) -> Result<SwitchState, DeployError> {
    follow(
        remote,
        host,
        &format!("{AGENT} switch --json --confirm-timeout {confirm_timeout} {guest_system}"),
        confirm_timeout,
        on_event,
    )
}

/// Runs `first` (a switch command in `--json` mode) and follows its switch
/// to the end.
pub fn follow(
    remote: &Remote,
    host: &str,
    first: &str,
    confirm_timeout: u64,
    on_event: &mut dyn FnMut(&str),
) -> Result<SwitchState, DeployError> {
    // Activation, two readiness rounds and Shepherd's restarts, generously.
    let deadline = Instant::now() + Duration::from_secs(confirm_timeout.min(86_400) * 2 + 600);
    let mut id: Option<String> = None;
    let mut cmd = first.to_owned();
    let mut lost = 0;
    loop {
        let r = remote.run_following(&cmd, &mut |line| {
            if let Some(i) = line
                .strip_prefix("switch ")
                .and_then(|r| r.strip_suffix(" started"))
            {
                id = Some(i.to_owned());
            }
            on_event(line);
        });
        match r {
            Ok(out) => {
                let state = SwitchState::parse(out.stdout.trim().as_bytes(), "switch");
                return match state {
                    Ok(s) => Ok(s),
                    Err(_) if out.code == 2 => Err(DeployError::SwitchFailed {
                        host: host.to_owned(),
                        reason: last_line(&out.stderr)
                            .trim_start_matches("fruix-agent: ")
                            .to_owned(),
                    }),
                    Err(_) => Err(DeployError::Answer {
                        host: host.to_owned(),
                        what: "fruix-agent switch".into(),
                        text: last_line(&out.stdout),
                    }),
                };
            }
            // The connection went (sshd restarted, a network cut): the
            // switch goes on in the guest; follow it again.
            Err(RemoteError::Unreachable(why)) if id.is_some() && Instant::now() < deadline => {
                lost += 1;
                on_event(&format!(
                    "connection lost ({why}); following again ({lost})"
                ));
                std::thread::sleep(Duration::from_secs(2));
                cmd = format!(
                    "{AGENT} switch --json --follow {}",
                    id.as_deref().unwrap_or_default()
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_missing_list_is_read_from_the_agents_json() {
        assert_eq!(
            parse_missing("{\"missing\":[\"a\",\"b\"],\"system\":\"s\",\"system_present\":true}\n"),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(parse_missing("missing a\n"), None);
        assert_eq!(parse_missing("{\"missing\":[3]}"), None);
    }
}
