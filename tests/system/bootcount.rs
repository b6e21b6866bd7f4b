//! Boot entries and boot counting, on the UEFI guests (booted with
//! `--persistent` from a copy of their image, so that systemd-boot's
//! renames and the agent's stay): `deploy --reboot` of a good system comes
//! up in generation 2 and its counted entry is blessed; in shepherd-pid1
//! mode, `deploy --reboot` of a system whose gating service fails at boot
//! is tried once, marked bad by its agent, and the guest falls back to
//! generation 2, which says so (exit 1); then a system whose gating probe
//! hangs, declared with one try and a 60 s boot deadline: the watchdog its
//! agent arms (softdog: QEMU has no i6300esb here) resets the trial, and
//! the guest falls back to generation 2 again. Folded into the UEFI boot
//! tests' guests: no boot of their own but the reboots.

use crate::deploy::{changed, deploy};
use crate::support::{Guest, Verdict, declaration, fields};

/// The agent's console line when it arms the watchdog, up to the seconds.
const ARMED: &str = "fruix-agent: watchdog: Software Watchdog armed: this trial boot is reset in ";

/// `fruix-agent boot-entries --json` on the guest.
fn boot_entries(guest: &Guest) -> serde_json::Value {
    let (code, out) = guest.ssh("/run/current-system/bin/fruix-agent boot-entries --json");
    assert_eq!(code, 0, "boot-entries exited {code}: {out}");
    serde_json::from_str(out.trim()).unwrap_or(serde_json::Value::Null)
}

/// The cases on `guest`, booted from `example`; `full`: the failing
/// trial too.
pub fn cases(v: &mut Verdict, guest: &Guest, example: &str, full: bool) {
    let base = example.trim_end_matches(".toml");
    let first = boot_entries(guest);
    v.check(
        first["entries"] == serde_json::json!(["fruix-1.conf"])
            && first["default"] == "fruix-1.conf",
        format!("the image's boot entries: {first}"),
    );
    let before = first["boot_id"].clone();
    let console_log = guest.vm["console_log"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let console = || std::fs::read_to_string(&console_log).unwrap_or_default();
    v.check(
        !console().contains("fruix-agent: watchdog:"),
        "the image's first boot (blessed) armed a watchdog",
    );

    // A good system, at the next boot: counted, tried, blessed.
    let good = changed(example, &format!("{base}-reboot-good"), false);
    let (code, j, err) = deploy(guest, &good, &["--reboot"], false);
    v.check(code == 0, format!("deploy --reboot exited {code}: {err}"));
    v.check(
        j["boot"]["generation"] == 2 && j["boot"]["entry"] == "fruix-2+3.conf",
        format!("deploy --reboot staged: {}", j["boot"]),
    );
    let r = &j["rebooted"];
    v.check(
        r["booted_generation"] == 2
            && r["ready_marker"] == "ready"
            && r["boot_entry"] == "blessed"
            && r["boot_fallback_from"].is_null(),
        format!("deploy --reboot came up as {r}"),
    );
    v.check(j["switch"].is_null(), "deploy --reboot switched live");
    let after = boot_entries(guest);
    v.check(
        after["boot_id"] != before && after["boot_id"].is_string(),
        format!("boot id {before} -> {}", after["boot_id"]),
    );
    v.check(
        after["entries"] == serde_json::json!(["fruix-2.conf", "fruix-1.conf"])
            && after["default"] == "fruix-2.conf",
        format!("entries after the good reboot: {}", after["entries"]),
    );
    let f = fields(&guest.query().1);
    for (k, want) in [
        ("generation", "2"),
        ("booted_generation", "2"),
        ("boot_entry", "blessed"),
        ("boot_fallback_from", "none"),
        ("boot_tries_failed", "0"),
        ("web2", "ready"),
    ] {
        v.expect(&f, k, want);
    }
    if !full {
        return;
    }

    // A system whose gating service never becomes ready: its boot fails,
    // its agent marks the entry bad and reboots, and systemd-boot starts
    // generation 2 again.
    let bad = changed(example, &format!("{base}-reboot-bad"), true);
    let (code, j, err) = deploy(guest, &bad, &["--reboot"], false);
    v.check(
        code == 1,
        format!("deploy --reboot of a failing system exited {code}: {err}"),
    );
    let r = &j["rebooted"];
    v.check(
        j["boot"]["generation"] == 3
            && r["booted_generation"] == 2
            && r["ready_marker"] == "ready"
            && r["boot_fallback_from"] == 3
            && r["boot_tries_failed"] == 1,
        format!("the failing trial came up as {r}"),
    );
    // Whether the deploy saw generation 3's failed boot before its agent
    // rebooted it depends on timing: not asserted.
    let after = boot_entries(guest);
    v.check(
        after["entries"] == serde_json::json!(["fruix-2.conf", "fruix-1.conf"]),
        format!("entries after the fallback: {}", after["entries"]),
    );
    let (_, gens) = guest.ssh("/run/current-system/bin/fruix-agent generations --json");
    let gens: serde_json::Value = serde_json::from_str(gens.trim()).unwrap_or_default();
    let states: Vec<_> = gens
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| (g["number"].clone(), g["state"].clone()))
        .collect();
    v.check(
        states
            == vec![
                (1.into(), "committed".into()),
                (2.into(), "committed".into()),
                (3.into(), "boot-failed".into()),
            ],
        format!("generations after the fallback: {states:?}"),
    );
    let f = fields(&guest.query().1);
    for (k, want) in [
        ("generation", "2"),
        ("booted_generation", "2"),
        ("boot_entry", "blessed"),
        ("boot_fallback_from", "3"),
        ("boot_tries_failed", "1"),
    ] {
        v.expect(&f, k, want);
    }

    // A system whose gating probe never returns: no outcome, so the
    // watchdog resets the trial at its deadline; one try, so systemd-boot
    // then starts generation 2.
    let hang = declaration(
        example,
        &format!("{base}-reboot-hang"),
        &[
            ("[agent]\n", "[agent]\nboot-tries = 1\nboot-deadline = 60\n"),
            ("gate = [\"sshd\",", "gate = [\"hang\", \"sshd\","),
            (
                "[image]",
                "[[agent.probes]]\nname = \"hang\"\ncommand = [\"/usr/bin/sleep\", \"3000\"]\ntimeout = 3000\n\n[image]",
            ),
        ],
    );
    let armed_before = console().matches(ARMED).count();
    let (code, j, err) = deploy(guest, &hang, &["--reboot"], false);
    v.check(
        code == 1,
        format!("deploy --reboot of a hanging system exited {code}: {err}"),
    );
    let r = &j["rebooted"];
    v.check(
        j["boot"]["generation"] == 4
            && j["boot"]["entry"] == "fruix-4+1.conf"
            && r["booted_generation"] == 2
            && r["ready_marker"] == "ready"
            && r["boot_fallback_from"] == 4
            && r["boot_tries_failed"] == 1,
        format!("the hanging trial came up as {r} (staged {})", j["boot"]),
    );
    let text = console();
    let armed: Vec<&str> = text.lines().filter(|l| l.contains(ARMED)).collect();
    v.check(
        armed.len() == armed_before + 1
            && armed.last().is_some_and(|l| {
                l.trim_end()
                    .strip_prefix(ARMED)
                    .and_then(|rest| rest.strip_suffix(" s unless it reaches an outcome"))
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|n| (1..60).contains(&n))
            }),
        format!("the watchdog's console lines: {armed:?}"),
    );
    v.check(
        text.contains("softdog: Initiating system reboot"),
        "the console has no softdog reset",
    );
    let after = boot_entries(guest);
    v.check(
        after["entries"] == serde_json::json!(["fruix-2.conf", "fruix-1.conf"]),
        format!(
            "entries after the watchdog's fallback: {}",
            after["entries"]
        ),
    );
    let f = fields(&guest.query().1);
    for (k, want) in [
        ("booted_generation", "2"),
        ("boot_fallback_from", "4"),
        ("boot_tries_failed", "1"),
    ] {
        v.expect(&f, k, want);
    }
}
