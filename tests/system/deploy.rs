//! Deploys to a running guest, on the guest a boot test has just asked:
//! the same system again (nothing sent, nothing changed), a changed one (a
//! service added, a package added: its dry run previewed from the stream of
//! its system item and nothing kept, then committed, generation 2, the
//! service answers), one whose new gating service never becomes ready (rolled back
//! by itself, exit 1, the old generation ready again, while the deploy's
//! connection is cut and followed again), a switch whose
//! worker is killed (finished by `--recover`), and gc after
//! `delete-generations --keep 1`. Folded into the boot tests' guests, so
//! that they cost no boot of their own.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{Guest, Verdict, declaration, fields, fruix, key, out};

/// First line of Debian's GPL-3 (base-files), which the example's web
/// services serve.
const GPL3_FIRST: &str = "                    GNU GENERAL PUBLIC LICENSE";

/// The declaration of `example` with a second web service on 8081 and a
/// package of its own (a one-file `dir` package), and, when `bad`, a
/// gating service whose readiness check can never pass.
pub fn changed(example: &str, name: &str, bad: bool) -> std::path::PathBuf {
    let note = out().join("deploy-note");
    std::fs::create_dir_all(&note).unwrap();
    // Two tests run at a time and may build from it at once: written
    // through a rename, so that no build reads it half-written.
    let text = "deployed by the system tests\n";
    if std::fs::read_to_string(note.join("NOTE")).ok().as_deref() != Some(text) {
        crate::support::write_atomic(&note.join("NOTE"), text.as_bytes(), 0o644);
    }
    let mut services = "[services.web2]\n\
        command = [\"/usr/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8081\", \"-h\", \"/usr/share/common-licenses\"]\n\
        user = \"fruix\"\n\
        ready = { http = \"http://127.0.0.1:8081/GPL-3\", timeout = 60 }\n\n"
        .to_owned();
    if bad {
        services.push_str(
            "[services.bad]\n\
             command = [\"/usr/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8082\", \"-h\", \"/usr/share/common-licenses\"]\n\
             ready = { http = \"http://127.0.0.1:8082/no-such-page\", timeout = 5 }\n\n",
        );
    }
    let package = format!(
        "[packages.deploy-note]\nversion = \"1\"\nsource = {{ type = \"dir\", path = \"{}\" }}\n\n[services.sshd]",
        note.display()
    );
    let gate_from = "gate = [\"sshd\",";
    let gate_to = if bad {
        "gate = [\"bad\", \"web2\", \"sshd\","
    } else {
        "gate = [\"web2\", \"sshd\","
    };
    declaration(
        example,
        name,
        &[
            (
                "base-packages = [\"native-runtime\", \"guile-extra\", \"shepherd\"]",
                "base-packages = [\"native-runtime\", \"guile-extra\", \"shepherd\", \"deploy-note\"]",
            ),
            ("[services.sshd]", &format!("{services}{package}")),
            (gate_from, gate_to),
        ],
    )
}

/// `fruix system deploy DECL` against the guest, its host keys pinned,
/// with a confirm timeout TCG guests meet.
pub fn deploy_command(guest: &Guest, decl: &Path) -> Command {
    let mut c = Command::new(fruix());
    c.args(["system", "deploy"])
        .arg(decl)
        .arg("--out")
        .arg(out())
        .arg("--ssh")
        .arg(format!("root@127.0.0.1:{}", guest.port))
        .arg("-i")
        .arg(key())
        .arg("--known-hosts")
        .arg(guest.pinned())
        .args(["--confirm-timeout", "180"]);
    c
}

/// `fruix system deploy DECL --json` against the guest: exit status, the
/// JSON it printed, and its standard error. With `cut`, the deploy's ssh
/// connection is killed (SIGKILL to its ssh processes) as soon as the switch
/// has started in the guest, as a network cut or a dying laptop would.
pub fn deploy(
    guest: &Guest,
    decl: &Path,
    extra: &[&str],
    cut: bool,
) -> (i32, serde_json::Value, String) {
    let mut child = deploy_command(guest, decl)
        .arg("--json")
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::io::Read::read_to_end(&mut { stdout }, &mut s);
        s
    });
    let mut err = String::new();
    let mut cuts = 0;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap_or_default();
        if cut && cuts == 0 && line.contains(": switch ") && line.ends_with(" started") {
            // Every ssh to the guest at this point is the deploy's: its
            // master connection and the session following the switch.
            let k = Command::new("pkill")
                .args(["-KILL", "-f", &format!("^ssh .*-p {} ", guest.port)])
                .status()
                .unwrap();
            assert!(k.success(), "no ssh of the deploy to kill");
            cuts += 1;
        }
        err.push_str(&line);
        err.push('\n');
    }
    let status = child.wait().unwrap();
    let stdout = reader.join().unwrap();
    let v = serde_json::from_slice(&stdout).unwrap_or(serde_json::Value::Null);
    (status.code().unwrap_or(-1), v, err)
}

/// The guest's report over SSH, as a map.
fn report(guest: &Guest) -> std::collections::BTreeMap<String, String> {
    fields(&guest.query().1)
}

/// The deploy cases on `guest`, booted from `example` (whose system is
/// `system`). `full`: all cases (one boot mode); else the commit only.
pub fn cases(v: &mut Verdict, guest: &Guest, example: &str, system: &str, full: bool) {
    let base = example.trim_end_matches(".toml");
    // The same system again: nothing sent, nothing changed.
    let same = declaration(example, &format!("{base}-deploy-same"), &[]);
    let (code, j, err) = deploy(guest, &same, &[], false);
    v.check(
        code == 0,
        format!("same-system deploy exited {code}: {err}"),
    );
    v.check(
        j["missing"] == 0 && j["sent_bytes"] == 0,
        format!(
            "same-system deploy sent {} items, {} bytes",
            j["missing"], j["sent_bytes"]
        ),
    );
    v.check(
        j["switch"]["phase"] == "committed" && j["switch"]["outcome"] == "unchanged",
        format!(
            "same-system switch: {} {}",
            j["switch"]["phase"], j["switch"]["outcome"]
        ),
    );
    v.expect(&report(guest), "generation", "1");

    // A changed system: a service and a package added. Its dry run
    // first: the guest previews the system it lacks from the stream of
    // that one item, and keeps nothing (the deploy then lacks 3 items).
    // Its agent is a changed binary too (the same one with bytes
    // appended): the switch must restart the daemon into it.
    let v2 = out().join("agent-v2");
    std::fs::create_dir_all(&v2).unwrap();
    let mut agent = std::fs::read(fruix().with_file_name("fruix-agent")).unwrap();
    agent.extend_from_slice(b"\n(a changed agent, by the system tests)\n");
    let v2 = v2.join("fruix-agent");
    crate::support::write_atomic(&v2, &agent, 0o755);
    let v2 = v2.to_str().unwrap().to_owned();
    let daemon_exe = "readlink /proc/$(cat /run/fruix/agent.pid)/exe";
    let (_, old_exe) = guest.ssh(daemon_exe);
    let good = changed(example, &format!("{base}-deploy-good"), false);
    let (code, j, err) = deploy(guest, &good, &["--dry-run", "--agent", &v2], false);
    v.check(code == 0, format!("dry-run deploy exited {code}: {err}"));
    let new_system = j["system"].as_str().unwrap_or_default();
    let p = &j["preview"];
    v.check(
        j["missing"] == 3 && j["sent_bytes"] == 0 && j["switch"].is_null(),
        format!(
            "dry run: missing {} sent {} switch {}",
            j["missing"], j["sent_bytes"], j["switch"]
        ),
    );
    // The agent is a Shepherd service only when Shepherd is PID 1.
    let restart: &[&str] = if example.starts_with("pid1") {
        &["fruix-agent"]
    } else {
        &[]
    };
    v.check(
        p["services"] == serde_json::json!({"start": ["web2"], "stop": [], "restart": restart}),
        format!("dry run's services: {}", p["services"]),
    );
    let gen2 = serde_json::json!([
        "generation",
        format!("link /frx/var/profiles/system-2 -> /frx/store/{new_system}")
    ]);
    v.check(
        p["activation"]
            .as_array()
            .is_some_and(|a| a.contains(&gen2)),
        format!("dry run's activation has no {gen2}: {}", p["activation"]),
    );
    let (code, j, err) = deploy(guest, &good, &["--agent", &v2], false);
    v.saw("deploy_good_sent_bytes", &j["sent_bytes"]);
    v.saw("deploy_good_missing", &j["missing"]);
    v.check(
        code == 0,
        format!("changed-system deploy exited {code}: {err}"),
    );
    v.check(
        j["missing"] == 3,
        format!(
            "changed system: {} items missing, expected 3 (system, deploy-note, agent)",
            j["missing"]
        ),
    );
    v.check(
        j["switch"]["phase"] == "committed" && j["switch"]["generation"] == 2,
        format!(
            "changed system: {} generation {} ({})",
            j["switch"]["phase"], j["switch"]["generation"], j["switch"]["reason"]
        ),
    );
    v.check(
        j["switch"]["services"]["start"] == serde_json::json!(["web2"]),
        format!(
            "changed system started {}",
            j["switch"]["services"]["start"]
        ),
    );
    let good_system = j["system"].as_str().unwrap_or_default().to_owned();
    let (_, new_exe) = guest.ssh(daemon_exe);
    let (_, v2_exe) = guest.ssh("readlink -f /run/current-system/bin/fruix-agent");
    v.check(
        new_exe != old_exe && new_exe == v2_exe && v2_exe.starts_with("/frx/store/"),
        format!(
            "the daemon runs {new_exe:?} after the switch to agent {v2_exe:?} (before: {old_exe:?})"
        ),
    );
    let (rc, page) = guest.ssh("busybox wget -q -O - http://127.0.0.1:8081/GPL-3 | head -n 1");
    v.check(
        rc == 0 && page.trim_end_matches('\n') == GPL3_FIRST,
        format!("web2 answered rc={rc}: {page:?}"),
    );
    let r = report(guest);
    for (k, want) in [
        ("ready_marker", "ready"),
        ("generation", "2"),
        ("switch", "committed"),
        ("switch_reason", "none"),
        ("system", good_system.as_str()),
    ] {
        v.expect(&r, k, want);
    }
    v.check(system != good_system, "the changed system has the old name");
    if !full {
        return;
    }

    // A system whose gating service never becomes ready: rolled back, by
    // the guest alone, while the deploy's connection is cut once the
    // switch has started; the deploy follows it again and reports it.
    let bad = changed(example, &format!("{base}-deploy-bad"), true);
    let (code, j, err) = deploy(guest, &bad, &[], true);
    let lost: Vec<&str> = err
        .lines()
        .filter(|l| l.contains(": connection lost ("))
        .collect();
    v.check(
        lost.len() == 1 && lost[0].ends_with("; following again (1)"),
        format!("bad-system deploy, connection cut: lost {lost:?}"),
    );
    v.check(
        code == 1,
        format!("bad-system deploy exited {code}, expected 1: {err}"),
    );
    v.check(
        j["switch"]["phase"] == "rolled-back" && j["switch"]["generation"] == 3,
        format!(
            "bad system: {} generation {}",
            j["switch"]["phase"], j["switch"]["generation"]
        ),
    );
    v.check(
        j["switch"]["failed_checks"]
            == serde_json::json!([
                "bad: service bad: http://127.0.0.1:8082/no-such-page answered 404"
            ]),
        format!(
            "bad system's failed checks: {}",
            j["switch"]["failed_checks"]
        ),
    );
    v.check(
        j["switch"]["outcome"] == "ready",
        format!(
            "after the rollback the old generation is {}",
            j["switch"]["outcome"]
        ),
    );
    let r = report(guest);
    for (k, want) in [
        ("ready_marker", "ready"),
        ("generation", "2"),
        ("switch", "rolled-back"),
        ("system", good_system.as_str()),
    ] {
        v.expect(&r, k, want);
    }
    let (rc, page) = guest.ssh("busybox wget -q -O - http://127.0.0.1:8081/GPL-3 | head -n 1");
    v.check(
        rc == 0 && page.trim_end_matches('\n') == GPL3_FIRST,
        format!("web2 after the rollback: rc={rc}: {page:?}"),
    );
    let (rc, _) = guest.ssh("busybox wget -q -O - http://127.0.0.1:8082/GPL-3");
    v.check(rc != 0, "the bad service still runs after the rollback");
    // The bad system has the first agent: the switch restarted the daemon
    // into it, the rollback back into generation 2's.
    let (_, exe) = guest.ssh(daemon_exe);
    v.check(
        exe == v2_exe,
        format!("after the rollback the daemon runs {exe:?}, not generation 2's {v2_exe:?}"),
    );

    // The worker killed mid-switch: `--recover` (what the next agent
    // start does) rolls it back. The bad system is in the store now; its
    // check fails only after its 5 s timeout, time to kill the worker.
    let bad_system = j["system"].as_str().unwrap_or_default().to_owned();
    let (rc, out) = guest.ssh(&format!(
        "A=/run/current-system/bin/fruix-agent; \
         ( $A switch --confirm-timeout 60 /frx/store/{bad_system} >/dev/null 2>&1 & ); \
         for i in $(seq 1 600); do grep -q '^  \"phase\": \"checking\"' /frx/var/fruix/switch.json 2>/dev/null && break; sleep 0.1; done; \
         pkill -KILL -f 'switch --worke[r]' ; sleep 0.5; \
         $A switch --recover --json >/tmp/recover.json; echo rc=$?; \
         grep -o '\"phase\": \"[a-z-]*\"' /tmp/recover.json | head -n 1"
    ));
    v.check(
        rc == 0 && out == "rc=1\n\"phase\": \"rolled-back\"\n",
        format!("killed switch then --recover: rc={rc} {out:?}"),
    );
    v.expect(&report(guest), "generation", "2");

    // gc after delete-generations: the rolled-back generation 3 (the
    // killed switch tried the same system, so the same number) goes, and with them the bad system's item; the
    // store verifies clean.
    let (rc, out) = guest.ssh(
        "A=/run/current-system/bin/fruix-agent; $A delete-generations --keep 0 --json && $A gc --json && $A verify --metadata-only >/dev/null && echo verify-clean",
    );
    let lines: Vec<&str> = out.lines().collect();
    v.saw("gc", lines.get(1).copied().unwrap_or_default());
    v.check(
        rc == 0 && lines.len() == 3 && lines[2] == "verify-clean",
        format!("delete-generations, gc, verify: rc={rc} {out:?}"),
    );
    v.check(
        lines.first() == Some(&"{\"deleted\":[3]}"),
        format!("delete-generations deleted {:?}", lines.first()),
    );
    let gc: serde_json::Value =
        serde_json::from_str(lines.get(1).copied().unwrap_or("null")).unwrap_or_default();
    let removed: Vec<&str> = gc["removed"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r[0].as_str()).collect())
        .unwrap_or_default();
    v.check(
        removed == [bad_system.as_str()],
        format!("gc removed {removed:?}, expected the bad system {bad_system}"),
    );
}
