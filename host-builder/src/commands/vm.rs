//! `fruix system vm`.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::Outcome;
use crate::cli::{BuildArgs, VmArgs};
use crate::declaration::{Firmware, ImageFormat};
use crate::pipeline;
use crate::progress::Progress;
use crate::vm::{self, VmOptions};

/// Runs `fruix system vm`.
pub fn run(a: VmArgs) -> Result<Outcome> {
    let progress = Progress::new(a.quiet || a.json);
    let is_decl = a.target.extension().is_some_and(|e| e == "toml");
    let (image, declared_firmware) = if is_decl {
        let Some(out) = a.out.clone() else {
            bail!("--out: needed to build {}", a.target.display());
        };
        let req = super::request(&BuildArgs {
            declaration: a.target.clone(),
            out,
            agent: a.agent.clone(),
            cache_dir: a.cache_dir.clone(),
            jobs: None,
            json: false,
            quiet: a.quiet || a.json,
        })?;
        let (loaded, made) = pipeline::image(&req, &[ImageFormat::Raw], false, &progress)?;
        let firmware = loaded.decl.image.firmware;
        let Some(raw) = made.images.into_iter().next() else {
            bail!("no image was written");
        };
        (raw.path, Some(firmware))
    } else {
        (a.target.clone(), None)
    };
    let firmware = a.firmware.or(declared_firmware).unwrap_or(Firmware::Uefi);
    let console_log = a.console_log.clone().unwrap_or_else(|| {
        let stem = image
            .file_stem()
            .map_or_else(|| "fruix".into(), |s| s.to_string_lossy().into_owned());
        image.with_file_name(format!("{stem}.console.log"))
    });
    let opts = VmOptions {
        image,
        accel: a.accel,
        firmware,
        memory: a.memory,
        cpus: a.cpus,
        ssh_port: a.ssh_port,
        timeout: Duration::from_secs(a.timeout),
        append: a.append.clone(),
        console_log,
        persistent: a.persistent,
    };
    if a.persistent {
        // QEMU appends to a persistent guest's console across its boots;
        // a run starts with a console of its own.
        let _ = std::fs::remove_file(&opts.console_log);
    }
    let stop = vm::stop_signals()?;
    // OVMF's variables and a direct boot's kernel and initrd: a private
    // directory with a random name (0700, made exclusively by tempfile).
    let work = tempfile::Builder::new()
        .prefix("fruix-vm-")
        .tempdir()
        .map_err(|e| vm::VmError::Io(std::env::temp_dir().join("fruix-vm-XXXXXX"), e))?;
    let mut opts = opts;
    let mut attempt = 0;
    let (mut qemu, port, mut report) = loop {
        attempt += 1;
        let (mut qemu, port, accel, entry) = vm::start(&opts, work.path())?;
        // A retry keeps the port the user (or the first attempt) chose.
        opts.ssh_port = port;
        progress.line(&format!(
            "vm: QEMU {} ({accel}, {}), console {}, ssh 127.0.0.1:{port}",
            qemu.id(),
            match firmware {
                Firmware::Uefi => "uefi",
                Firmware::Direct => "direct",
            },
            opts.console_log.display()
        ));
        // QEMU failing is an error on the host (exit 2); a report, ready
        // or not, is the guest's.
        if let Some(e) = &entry {
            progress.line(&format!(
                "vm: direct boot of the ESP's default entry {e} (direct boot counts no tries)"
            ));
        }
        let mut report = vm::wait_ready(&mut qemu, &opts, port, accel, &stop)?;
        report.boot_entry = entry;
        if report.kernel_panicked() && attempt <= a.retries && !stop.load(Ordering::Relaxed) {
            let kept = opts
                .console_log
                .with_extension(format!("panic-{attempt}.log"));
            let _ = std::fs::rename(&opts.console_log, &kept);
            progress.line(&format!(
                "vm: the guest kernel panicked after {:.1} s (console kept in {}); booting again",
                report.seconds,
                kept.display()
            ));
            continue;
        }
        break (qemu, port, report);
    };
    report.attempts = attempt;
    // The host keys the console carried, pinned for `fruix query` and ssh
    // (the console is the channel trusted here, the port is not).
    if !report.host_keys.is_empty() {
        let path = vm::known_hosts::write(&report.console_log, port, &report.host_keys)?;
        progress.line(&format!(
            "vm: host keys {} pinned in {}",
            report
                .host_keys
                .iter()
                .map(|k| k.fingerprint())
                .collect::<Vec<_>>()
                .join(", "),
            path.display()
        ));
        report.known_hosts = Some(path);
    } else if report.report.is_some() {
        progress.line(&format!(
            "vm: no host keys on the console ({}): nothing pinned",
            report
                .host_keys_error
                .as_deref()
                .unwrap_or("the agent printed no key block")
        ));
    }
    {
        let mut out = std::io::stdout().lock();
        if a.json {
            // One line, so that a program can read the report while the guest runs.
            writeln!(out, "{}", serde_json::to_string(&report)?)?;
        } else if let Some(r) = &report.report {
            write!(out, "{}", r.to_lines())?;
        }
        out.flush()?;
    }
    if let Some(why) = &report.failure
        && !a.json
    {
        let mut err = std::io::stderr().lock();
        writeln!(
            err,
            "fruix: boot failed after {:.1} s: {why}",
            report.seconds
        )?;
        if report.report.is_none() {
            writeln!(
                err,
                "fruix: last console lines ({}):",
                report.console_log.display()
            )?;
            for l in &report.console_tail {
                writeln!(err, "  {l}")?;
            }
        }
    }
    let outcome = if report.is_ready() {
        Outcome::Success
    } else {
        Outcome::Findings
    };
    // No report (timeout, QEMU gone, interrupted): QEMU is stopped already.
    // A guest that reported, ready or not, keeps running to be looked at,
    // unless asked to stop.
    if report.report.is_none() || a.stop_when_ready {
        drop(qemu);
        return Ok(outcome);
    }
    if report.is_ready() {
        progress.line(&format!("vm: ready after {:.1} s", report.seconds));
    }
    progress.line(&format!(
        "vm: running; ssh -p {port} root@127.0.0.1 (Ctrl-C stops it)"
    ));
    while !stop.load(Ordering::Relaxed) {
        match qemu.exited() {
            None => std::thread::sleep(Duration::from_millis(200)),
            // A persistent direct boot's guest that rebooted is started
            // again, from the ESP's default entry as it is now (UEFI
            // guests reboot inside QEMU).
            Some(status)
                if status.success()
                    && a.persistent
                    && firmware == Firmware::Direct
                    && rebooted(&opts.console_log) =>
            {
                let (q, _, _, entry) = vm::start(&opts, work.path())?;
                progress.line(&format!(
                    "vm: the guest rebooted; QEMU {} boots entry {}",
                    q.id(),
                    entry.as_deref().unwrap_or("?")
                ));
                qemu = q;
            }
            Some(_) => break,
        }
    }
    drop(qemu);
    Ok(outcome)
}

/// True when the console's last kernel shutdown line asked for a restart
/// (not a power-off).
fn rebooted(console: &std::path::Path) -> bool {
    let text = std::fs::read(console).unwrap_or_default();
    let tail = &text[text.len().saturating_sub(16 * 1024)..];
    String::from_utf8_lossy(tail)
        .lines()
        .rev()
        .find(|l| l.contains("reboot: "))
        .is_some_and(|l| l.contains("reboot: Restarting system"))
}
