//! Power cuts, on the rc-shepherd UEFI guest after its boot-counting
//! cases: QEMU is killed (SIGKILL, as a pulled plug) while the agent holds
//! at a known step (`/run/fruix/hold`, agent/src/hold.rs), and the guest is
//! booted again from the same disk. During a live switch (its state file
//! says `checking`): the next boot is the committed generation, ready, and
//! the interrupted switch is rolled back by itself. During an ESP write
//! (`deploy --boot`'s entry written under its temporary name, not yet
//! renamed): `fsck.fat -n` finds the ESP clean at once (the agent marks
//! it dirty only during a step of writes), and the next boot, ready in
//! the committed generation, finishes the entry and sweeps the temporary
//! file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Guest, Verdict, declaration, fields, out};

/// Where the ESP starts on a fruix image, and its size.
const ESP_AT: u64 = 1 << 20;
const ESP_SIZE: u64 = 128 << 20;

/// Starts `fruix system deploy DECL` against the guest, its output in
/// files: the cut kills the guest under it, and it is killed then.
fn spawn_deploy(guest: &Guest, decl: &Path, extra: &[&str], name: &str) -> Child {
    let log = std::fs::File::create(out().join(format!("{name}.deploy.log"))).unwrap();
    crate::deploy::deploy_command(guest, decl)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// The pids of the QEMUs whose command line names `image`.
fn qemus_of(image: &Path) -> Vec<i32> {
    let needle = image.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
            let c = std::fs::read(e.path().join("cmdline")).ok()?;
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            (c.contains("qemu-system") && c.contains(&needle)).then_some(pid)
        })
        .collect()
}

/// Kills the QEMU running `image` with SIGKILL and waits until it is
/// gone; returns how many there were.
fn pull_the_plug(image: &Path) -> usize {
    let pids = qemus_of(image);
    for p in &pids {
        // SAFETY: kill with a pid read from /proc; at worst it is gone.
        unsafe {
            libc::kill(*p, libc::SIGKILL);
        }
    }
    let t = Instant::now();
    while !qemus_of(image).is_empty() && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    pids.len()
}

/// Waits until the console log has `needle`, up to `secs`.
fn console_has(log: &str, needle: &str, secs: u64) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        if std::fs::read_to_string(log).is_ok_and(|c| c.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

/// The ESP of `image`, copied out (fsck.fat and mdir take no offset).
fn esp_of(image: &Path, name: &str) -> PathBuf {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(image).unwrap();
    f.seek(SeekFrom::Start(ESP_AT)).unwrap();
    let mut data = vec![0u8; ESP_SIZE as usize];
    f.read_exact(&mut data).unwrap();
    let to = out().join(format!("{name}.esp"));
    std::fs::write(&to, data).unwrap();
    to
}

/// `fsck.fat -n` of an ESP copied out: its exit status, and its lines
/// beyond the version line and the summary.
fn fsck(esp: &Path) -> (i32, Vec<String>) {
    let o = Command::new("fsck.fat")
        .arg("-n")
        .arg(esp)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let summary = format!("{}: ", esp.display());
    let findings = text
        .lines()
        .filter(|l| {
            !(l.starts_with("fsck.fat ")
                || (l.starts_with(&summary) && l.contains(" files, ") && l.ends_with(" clusters"))
                || l.trim().is_empty())
        })
        .map(str::to_owned)
        .collect();
    (o.status.code().unwrap_or(-1), findings)
}

/// `loader/entries` of an ESP copied out, as mtools reads it, sorted.
fn entries(esp: &Path) -> Vec<String> {
    let o = Command::new("mdir")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-b", "-i"])
        .arg(esp)
        .arg("::/loader/entries")
        .output()
        .unwrap();
    let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.rsplit('/').next().map(str::to_owned))
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

/// Boots `image` again, keeping what it writes.
fn boot_again(image: &Path) -> Guest {
    Guest::boot_with(image, "uefi", &[], &["--persistent"])
}

/// The guest's report once no switch is under way (the interrupted one is
/// rolled back by a worker the daemon starts, beside the boot's round).
fn settled(guest: &Guest) -> std::collections::BTreeMap<String, String> {
    let t = Instant::now();
    loop {
        let f = fields(&guest.query().1);
        let s = f.get("switch").map(String::as_str).unwrap_or_default();
        if matches!(s, "none" | "committed" | "rolled-back" | "failed")
            || t.elapsed() > Duration::from_secs(120)
        {
            return f;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Cuts the power at `point` while `deploy` (started by `start`) runs,
/// checks the ESP the cut left, and boots the guest again.
fn cut_at(
    v: &mut Verdict,
    guest: Guest,
    image: &Path,
    point: &str,
    start: impl FnOnce(&Guest) -> Child,
) -> (Guest, PathBuf) {
    let log = guest.vm["console_log"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (rc, _) = guest.ssh(&format!("printf '{point}\\n' > /run/fruix/hold"));
    v.check(rc == 0, format!("hold at {point}: ssh exited {rc}"));
    let mut deploy = start(&guest);
    let line = format!("fruix-agent: holding at {point} (asked by /run/fruix/hold)");
    let held = console_has(&log, &line, 600);
    v.check(held, format!("no '{line}' on the console ({log})"));
    let killed = pull_the_plug(image);
    v.check(
        killed == 1,
        format!("{killed} QEMUs of {} to kill", image.display()),
    );
    let _ = deploy.kill();
    let _ = deploy.wait();
    drop(guest);
    let esp = esp_of(image, &format!("powercut-{point}"));
    let (code, findings) = fsck(&esp);
    v.check(
        code == 0 && findings.is_empty(),
        format!("fsck.fat -n after the cut at {point} exited {code}: {findings:?}"),
    );
    (boot_again(image), esp)
}

/// The cases on `guest` (booted from `image` with `--persistent`, from
/// `example`, in generation 2 after its good reboot); returns the guest
/// the last boot brought up.
pub fn cases(v: &mut Verdict, guest: Guest, image: &Path, example: &str) -> Guest {
    let base = example.trim_end_matches(".toml");
    // A system other than generation 2's: its boot policy differs.
    let next = declaration(
        example,
        &format!("{base}-powercut"),
        &[("[agent]\n", "[agent]\nboot-tries = 2\n")],
    );

    // During a live switch, in its readiness round.
    let (guest, _) = cut_at(v, guest, image, "switch-checking", |g| {
        spawn_deploy(g, &next, &[], "powercut-switch")
    });
    v.expect(&guest.console(), "ready_marker", "ready");
    let f = settled(&guest);
    for (k, want) in [
        ("ready_marker", "ready"),
        ("generation", "2"),
        ("booted_generation", "2"),
        ("boot_entry", "blessed"),
        ("switch", "rolled-back"),
        ("switch_reason", "interrupted in phase checking"),
    ] {
        v.expect(&f, k, want);
    }

    // During an ESP write: `deploy --boot`'s counted entry is on the disk
    // under its temporary name.
    let (guest, esp) = cut_at(v, guest, image, "esp-rename", |g| {
        spawn_deploy(g, &next, &["--boot"], "powercut-esp")
    });
    let left = entries(&esp);
    v.check(
        left == [
            ".fruix-tmp-fruix-3+2.conf.part",
            "fruix-1.conf",
            "fruix-2.conf",
        ],
        format!("loader/entries after the cut in the ESP write: {left:?}"),
    );
    v.expect(&guest.console(), "ready_marker", "ready");
    let f = settled(&guest);
    for (k, want) in [
        ("ready_marker", "ready"),
        ("booted_generation", "2"),
        ("boot_entry", "blessed"),
        ("boot_fallback_from", "none"),
    ] {
        v.expect(&f, k, want);
    }
    v.saw(
        "generation_after_esp_cut",
        f.get("generation").cloned().unwrap_or_default(),
    );
    // The ready boot's sync finished the entry and swept the rest.
    let (rc, out) = guest.ssh("/run/current-system/bin/fruix-agent boot-entries --json");
    let j: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_default();
    v.check(
        rc == 0
            && j["entries"]
                == serde_json::json!(["fruix-3+2.conf", "fruix-2.conf", "fruix-1.conf"]),
        format!("boot entries after the ESP cut's next boot: {out}"),
    );
    let esp = esp_of(image, "powercut-after");
    let (code, findings) = fsck(&esp);
    v.check(
        code == 0 && findings.is_empty(),
        format!("fsck.fat -n after the next boot exited {code}: {findings:?}"),
    );
    let now = entries(&esp);
    v.check(
        now == ["fruix-1.conf", "fruix-2.conf", "fruix-3+2.conf"],
        format!("loader/entries after the next boot: {now:?}"),
    );
    guest
}
