//! The readiness report: the outcome, as cloud-init and systemd tell them
//! apart (`ready`, `degraded`, `failed`, `pending`), and the `key=value`
//! fields that are always present. The report's type and its forms
//! (lines, JSON, console) are `fruix_system`'s, which the host reads with.

pub use fruix_system::report::{Outcome, Report};

use crate::checks::{Check, CheckStatus};

/// Values that are not checks.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// `shepherd-pid1` or `rc-shepherd`.
    pub boot_mode: String,
    /// The system item's name.
    pub system: String,
    /// Shepherd's pid, if found.
    pub shepherd_pid: Option<u32>,
    /// Base items by origin.
    pub native_base_store_count: usize,
    /// Base items copied from the build host.
    pub host_base_store_count: usize,
    /// The runtime item's name.
    pub runtime_store: String,
    /// Milliseconds from boot (or agent start) to the final outcome.
    pub ready_ms: Option<u64>,
    /// The current generation's number.
    pub generation: Option<u64>,
    /// The last live switch: `none`, `in-progress`, `committed`,
    /// `rolled-back`, `failed`.
    pub switch: String,
    /// Why the last switch rolled back or failed.
    pub switch_reason: Option<String>,
    /// The SSH host keys' fingerprints by report key
    /// (`ssh_host_key_ed25519`), for each of the types activation makes.
    pub host_keys: Vec<(String, String)>,
    /// This boot: its generation and entry, and a fallback from a newer
    /// one (read once per boot, `bootcheck::boot_facts`).
    pub boot: crate::bootfacts::BootFacts,
}

/// Status keys fed by a check of the given name.
const CHECK_KEYS: &[(&str, &str)] = &[
    ("shepherd", "shepherd_status"),
    ("sshd", "sshd_status"),
    ("compat-shims", "compat_prefix_shims"),
    ("guile-module-smoke", "guile_module_smoke"),
    ("runtime-slice", "native_runtime_ready"),
    ("store", "store_verify"),
    ("activation", "activation"),
];

/// The outcome of `checks` when `gate` names the gating ones.
pub fn outcome(checks: &[Check], gate: &[String]) -> Outcome {
    let gating = |c: &Check| gate.contains(&c.name);
    if checks
        .iter()
        .any(|c| c.status == CheckStatus::Failed && gating(c))
    {
        Outcome::Failed
    } else if checks.iter().any(|c| c.status == CheckStatus::Pending) {
        Outcome::Pending
    } else if checks.iter().any(|c| c.status == CheckStatus::Failed) {
        Outcome::Degraded
    } else {
        Outcome::Ready
    }
}

/// Builds the report.
pub fn build(facts: &Facts, checks: &[Check], gate: &[String]) -> Report {
    let outcome = outcome(checks, gate);
    let value_of = |name: &str, missing: &str| {
        checks
            .iter()
            .find(|c| c.name == name)
            .map_or(missing.to_owned(), |c| c.value.clone())
    };
    let mut fields: Vec<(String, String)> = vec![
        ("ready_marker".into(), outcome.as_str().into()),
        ("boot_mode".into(), facts.boot_mode.clone()),
        ("system".into(), facts.system.clone()),
        (
            "shepherd_pid".into(),
            facts.shepherd_pid.map_or("none".into(), |p| p.to_string()),
        ),
    ];
    for (check, key) in CHECK_KEYS.iter().take(4) {
        fields.push(((*key).into(), value_of(check, "not-declared")));
    }
    fields.push((
        "native_base_store_count".into(),
        facts.native_base_store_count.to_string(),
    ));
    fields.push((
        "host_base_store_count".into(),
        facts.host_base_store_count.to_string(),
    ));
    fields.push(("runtime_store".into(), facts.runtime_store.clone()));
    for (check, key) in CHECK_KEYS.iter().skip(4) {
        fields.push(((*key).into(), value_of(check, "not-declared")));
    }
    // Always present, `none` until activation made the key, so that a
    // reader can tell a guest without keys from an older agent.
    for t in fruix_system::hostkeys::KEY_TYPES {
        let key = fruix_system::hostkeys::report_key(t);
        let fp = facts.host_keys.iter().find(|(k, _)| *k == key);
        fields.push((key, fp.map_or("none".into(), |(_, f)| f.clone())));
    }
    fields.push((
        "generation".into(),
        facts.generation.map_or("none".into(), |g| g.to_string()),
    ));
    fields.push((
        "switch".into(),
        if facts.switch.is_empty() {
            "none".into()
        } else {
            facts.switch.clone()
        },
    ));
    fields.push((
        "switch_reason".into(),
        facts.switch_reason.clone().unwrap_or_else(|| "none".into()),
    ));
    let boot = &facts.boot;
    let or_none = |v: Option<u64>| v.map_or("none".into(), |g: u64| g.to_string());
    fields.push(("booted_generation".into(), or_none(boot.generation)));
    fields.push((
        "boot_entry".into(),
        if boot.entry.is_empty() {
            "none".into()
        } else {
            boot.entry.clone()
        },
    ));
    fields.push(("boot_fallback_from".into(), or_none(boot.fallback_from)));
    fields.push(("boot_tries_failed".into(), boot.tries_failed.to_string()));
    fields.push((
        "ready_ms".into(),
        facts.ready_ms.map_or("none".into(), |m| m.to_string()),
    ));
    // Declared probes beyond the keys above, under their own names.
    for c in checks
        .iter()
        .filter(|c| !CHECK_KEYS.iter().any(|(n, _)| *n == c.name))
    {
        fields.push((c.name.replace('-', "_"), c.value.clone()));
    }
    let reasons = checks
        .iter()
        .flat_map(|c| c.reasons.iter().cloned())
        .collect();
    let pending = checks
        .iter()
        .filter(|c| c.status == CheckStatus::Pending)
        .map(|c| c.name.clone())
        .collect();
    Report {
        outcome,
        fields,
        reasons,
        pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Vec<String> {
        vec!["sshd".into(), "store".into()]
    }

    #[test]
    fn outcomes() {
        let ok = vec![
            Check::ok("sshd", "running"),
            Check::ok("store", "ok"),
            Check::ok("guile-module-smoke", "ok"),
        ];
        assert_eq!(outcome(&ok, &gate()), Outcome::Ready);
        let degraded = vec![
            Check::ok("sshd", "running"),
            Check::ok("store", "ok"),
            Check::failed("guile-module-smoke", "failed", vec!["x".into()]),
        ];
        assert_eq!(outcome(&degraded, &gate()), Outcome::Degraded);
        let failed = vec![
            Check::failed("sshd", "stopped", vec![]),
            Check::pending("store"),
        ];
        assert_eq!(
            outcome(&failed, &gate()),
            Outcome::Failed,
            "a gating failure is final"
        );
        let pending = vec![Check::ok("sshd", "running"), Check::pending("store")];
        assert_eq!(outcome(&pending, &gate()), Outcome::Pending);
    }

    #[test]
    fn every_key_is_always_there_in_order() {
        let facts = Facts {
            boot_mode: "shepherd-pid1".into(),
            system: "abc-system-x".into(),
            shepherd_pid: Some(1),
            native_base_store_count: 3,
            runtime_store: "rt".into(),
            ..Facts::default()
        };
        let checks = vec![
            Check::ok("sshd", "running"),
            Check::failed(
                "store",
                "failed",
                vec!["content-changed /frx/store/x/a".into()],
            ),
            Check::ok("extra-probe", "ok"),
        ];
        let r = build(&facts, &checks, &gate());
        let keys: Vec<&str> = r.fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "ready_marker",
                "boot_mode",
                "system",
                "shepherd_pid",
                "shepherd_status",
                "sshd_status",
                "compat_prefix_shims",
                "guile_module_smoke",
                "native_base_store_count",
                "host_base_store_count",
                "runtime_store",
                "native_runtime_ready",
                "store_verify",
                "activation",
                "ssh_host_key_ed25519",
                "ssh_host_key_ecdsa",
                "generation",
                "switch",
                "switch_reason",
                "booted_generation",
                "boot_entry",
                "boot_fallback_from",
                "boot_tries_failed",
                "ready_ms",
                "extra_probe"
            ]
        );
        let lines = r.to_lines();
        assert!(lines.starts_with("ready_marker=failed\nboot_mode=shepherd-pid1\nsystem=abc-system-x\nshepherd_pid=1\nshepherd_status=not-declared\nsshd_status=running\n"), "{lines}");
        assert!(lines.contains("host_base_store_count=0\n"));
        assert!(
            lines.ends_with("reason=content-changed /frx/store/x/a\n"),
            "{lines}"
        );
        assert!(
            r.console_line()
                .starts_with("fruix-ready: ready_marker=failed boot_mode=shepherd-pid1 ")
        );
        assert_eq!(r.to_json()["store_verify"], "failed");
    }

    #[test]
    fn the_hosts_readers_get_back_every_field_the_agent_wrote() {
        use fruix_system::report::ConsoleWatch;
        let facts = Facts {
            boot_mode: "rc-shepherd".into(),
            system: "abc-system-x".into(),
            shepherd_pid: Some(812),
            native_base_store_count: 3,
            host_base_store_count: 1,
            runtime_store: "rt".into(),
            ready_ms: Some(5123),
            generation: Some(2),
            switch: "rolled-back".into(),
            switch_reason: Some("not ready: web: service web: tcp 127.0.0.1:8081 refused".into()),
            host_keys: vec![(
                "ssh_host_key_ed25519".into(),
                "SHA256:3GG+7T8TFHpUGjaC2RPRGJbv9TE+moNWGxySnNXfNZI".into(),
            )],
            boot: crate::bootfacts::BootFacts {
                generation: Some(2),
                entry: "blessed".into(),
                fallback_from: Some(3),
                tries_failed: 1,
                error: None,
            },
        };
        let checks = vec![
            Check::ok("sshd", "running"),
            Check::failed(
                "store",
                "failed",
                vec!["content-changed /frx/store/x/a b".into()],
            ),
            Check::pending("guile-module-smoke"),
            Check::ok("extra-probe", "ok"),
            // A declared service: its own key, as a probe's.
            Check::failed(
                "web-app",
                "not-ready",
                vec!["service web-app: http://127.0.0.1:8080/x answered 404".into()],
            ),
        ];
        let r = build(&facts, &checks, &gate());
        assert_eq!(r.outcome, Outcome::Failed);
        for (k, want) in [
            ("booted_generation", "2"),
            ("boot_entry", "blessed"),
            ("boot_fallback_from", "3"),
            ("boot_tries_failed", "1"),
        ] {
            assert_eq!(r.get(k), Some(want), "{k}");
        }
        assert_eq!(
            r.fields.last(),
            Some(&("web_app".into(), "not-ready".into()))
        );
        // Lines, as `fruix-agent status` prints them and `fruix query` reads them.
        assert_eq!(Report::from_lines(&r.to_lines(), "status").unwrap(), r);
        // JSON, as `status --json` prints it: the same fields, in key order.
        let back = Report::from_json(&r.to_json().to_string(), "status").unwrap();
        let mut want = r.fields.clone();
        want[1..].sort();
        assert_eq!(back.fields, want);
        assert_eq!((&back.reasons, &back.pending), (&r.reasons, &r.pending));
        // The console, as the agent announces it and `fruix system vm` reads it.
        let mut w = ConsoleWatch::default();
        let got = r
            .console_text()
            .lines()
            .filter_map(|l| w.feed(l))
            .last()
            .unwrap();
        assert_eq!(
            (got.outcome, &got.fields, &got.reasons),
            (r.outcome, &r.fields, &r.reasons)
        );
    }
}
