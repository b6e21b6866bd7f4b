//! The `[agent]` section: command probes and the gate.

use std::collections::HashSet;

use crate::declaration::error::{DeclError, Locator};
use crate::declaration::{AgentSettings, BUILTIN_CHECKS};

/// Checks the probes (names, commands, timeouts), then that each gate
/// entry is a built-in check or a declared probe.
pub(super) fn check(at: &Locator<'_>, agent: &AgentSettings) -> Result<(), DeclError> {
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
        if p.command.get_ref().is_empty() || p.command.get_ref()[0].is_empty() {
            return Err(at.error(
                &p.command.span(),
                format!("`agent.probes.command`: probe '{n}' has no program"),
            ));
        }
        let t = *p.timeout.get_ref();
        if !(1..=3600).contains(&t) {
            return Err(at.error(
                &p.timeout.span(),
                format!("`agent.probes.timeout`: {t} is outside 1 to 3600 seconds"),
            ));
        }
    }
    for g in &agent.gate {
        let n = g.get_ref().as_str();
        if !BUILTIN_CHECKS.contains(&n) && !probes.contains(n) {
            return Err(at.error(
                &g.span(),
                format!(
                    "`agent.gate`: '{n}' is neither a built-in check ({}) nor a declared probe",
                    BUILTIN_CHECKS.join(", ")
                ),
            ));
        }
    }
    Ok(())
}
