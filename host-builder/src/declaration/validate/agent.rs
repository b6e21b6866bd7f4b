//! The `[agent]` section: command probes, the gate and the boot policy. A probe's command
//! and environment go into `system.toml` and are run by the agent as root.

use std::collections::HashSet;

use super::text::check_text;
use crate::declaration::error::{DeclError, Locator};
use crate::declaration::{AgentSettings, BUILTIN_CHECKS};

/// Checks the probes (names, commands, environments, timeouts), then that
/// each gate entry is a built-in check, a declared probe or a declared
/// service.
pub(super) fn check(
    at: &Locator<'_>,
    agent: &AgentSettings,
    services: &[&str],
) -> Result<(), DeclError> {
    let mut probes = HashSet::new();
    for p in &agent.probes {
        let n = p.name.get_ref();
        if n.is_empty()
            || !n
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(at.error(
                &p.name.span(),
                format!(
                    "`agent.probes.name`: '{n}' is not a probe name (lower-case letters, digits and '-')"
                ),
            ));
        }
        if BUILTIN_CHECKS.contains(&n.as_str()) || !probes.insert(n.as_str()) {
            return Err(at.error(
                &p.name.span(),
                format!("`agent.probes.name`: '{n}' is declared twice or is a built-in check"),
            ));
        }
        let command = p.command.get_ref();
        if command.first().is_none_or(|c| c.get_ref().is_empty()) {
            return Err(at.error(
                &p.command.span(),
                format!("`agent.probes.command`: probe '{n}' has no program"),
            ));
        }
        for a in command {
            check_text(at, &a.span(), "agent.probes.command", a.get_ref())?;
        }
        for (k, v) in &p.environment {
            if !valid_env_name(k.get_ref()) {
                return Err(at.error(
                    &k.span(),
                    format!(
                        "`agent.probes.environment`: '{}' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)",
                        k.get_ref().escape_debug()
                    ),
                ));
            }
            check_text(at, &v.span(), "agent.probes.environment", v.get_ref())?;
        }
        let t = *p.timeout.get_ref();
        if !(1..=3600).contains(&t) {
            return Err(at.error(
                &p.timeout.span(),
                format!("`agent.probes.timeout`: {t} is outside 1 to 3600 seconds"),
            ));
        }
    }
    let t = *agent.boot_tries.get_ref();
    if !(1..=9).contains(&t) {
        return Err(at.error(
            &agent.boot_tries.span(),
            format!("`agent.boot-tries`: {t} is outside 1 to 9"),
        ));
    }
    let d = *agent.boot_deadline.get_ref();
    if d != 0 && !(30..=65535).contains(&d) {
        return Err(at.error(
            &agent.boot_deadline.span(),
            format!(
                "`agent.boot-deadline`: {d} is neither 0 (no watchdog) nor 30 to 65535 seconds"
            ),
        ));
    }
    for g in &agent.gate {
        let n = g.get_ref().as_str();
        if !BUILTIN_CHECKS.contains(&n) && !probes.contains(n) && !services.contains(&n) {
            return Err(at.error(
                &g.span(),
                format!(
                    "`agent.gate`: '{n}' is neither a built-in check ({}) nor a declared probe or service",
                    BUILTIN_CHECKS.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Whether `n` is a name `env` and the shells take: `[A-Za-z_][A-Za-z0-9_]*`
/// (so no `=`, which would move the split between name and value).
pub(super) fn valid_env_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}
