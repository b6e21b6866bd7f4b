//! FreeBSD's loader files that name a Fruix system: the image's
//! `/boot/loader.conf` (written by the builder), `/boot/loader.conf.local`
//! (the committed generation, written by the agent) and
//! `/boot/nextboot.conf` (a generation tried once, written by the agent
//! in the format of nextboot(8)). The loader reads `loader.conf`, then
//! `loader.conf.local`, whose variables override it, then, when its first
//! line is `nextboot_enable="YES"`, `nextboot.conf`, whose first line it
//! rewrites to `nextboot_enable="NO"` before the kernel starts: the trial
//! is tried once, and the boot after it is the committed generation's
//! again. The agent reads the variables back from all three with
//! [`parse`].

use std::collections::BTreeMap;

/// The script rc mode's init runs from the system item (`init_script`).
pub const INIT_SCRIPT: &str = "libexec/fruix-first-activation";
/// The image's loader settings, written by the builder.
pub const LOADER_CONF: &str = "/boot/loader.conf";
/// The committed generation's variables, written by the agent.
pub const LOADER_CONF_LOCAL: &str = "/boot/loader.conf.local";
/// A generation tried at the next boot only.
pub const NEXTBOOT_CONF: &str = "/boot/nextboot.conf";
/// The first line of a `nextboot.conf` the loader is to read.
pub const NEXTBOOT_YES: &str = "nextboot_enable=\"YES\"";
/// What the loader rewrites that line to once it has read the file (as
/// long as the line was, so that it rewrites in place).
pub const NEXTBOOT_NO: &str = "nextboot_enable=\"NO\" ";

/// The loader variables that boot `system` (an item name): the system and
/// its digest for the agent (`kenv`), the generation when known, and the
/// init: the system's agent as PID 1 in shepherd-pid1 mode (`pid1_agent`,
/// an item name), else rc with the system's first-activation script.
pub fn system_vars(system: &str, pid1_agent: Option<&str>, generation: Option<u64>) -> String {
    let digest = system.split('-').next().unwrap_or_default();
    let mut s = format!("fruix.system=\"/frx/store/{system}\"\nfruix.digest=\"{digest}\"\n");
    if let Some(g) = generation {
        s.push_str(&format!("fruix.generation=\"{g}\"\n"));
    }
    match pid1_agent {
        Some(agent) => s.push_str(&format!(
            "init_path=\"/frx/store/{agent}/bin/fruix-agent\"\n"
        )),
        // init_path too: the files add up, and a pid1 generation's
        // init_path must not stay when an rc one follows it.
        None => s.push_str(&format!(
            "init_path=\"/sbin/init\"\ninit_script=\"/frx/store/{system}/{INIT_SCRIPT}\"\n"
        )),
    }
    s
}

/// `loader.conf.local` for a committed generation.
pub fn local_text(vars: &str) -> String {
    format!("# Written by fruix-agent: the committed generation, booted by default.\n{vars}")
}

/// `nextboot.conf` for a generation tried at the next boot, as
/// `nextboot -e` writes it: the enabling line first.
pub fn nextboot_text(vars: &str) -> String {
    format!("{NEXTBOOT_YES}\n{vars}")
}

/// What a loader file says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoaderVars {
    /// Every `name="value"` line, quotes removed.
    pub vars: BTreeMap<String, String>,
}

impl LoaderVars {
    /// The system item it boots (`fruix.system` without `/frx/store/`).
    pub fn system(&self) -> Option<&str> {
        self.vars
            .get("fruix.system")
            .map(|s| s.strip_prefix("/frx/store/").unwrap_or(s))
    }

    /// The generation it boots.
    pub fn generation(&self) -> Option<u64> {
        self.vars.get("fruix.generation")?.parse().ok()
    }

    /// For `nextboot.conf`: true while the loader is still to read it,
    /// false once it has (it rewrote the first line to `"NO"`).
    pub fn enabled(&self) -> bool {
        self.vars
            .get("nextboot_enable")
            .is_some_and(|v| v.eq_ignore_ascii_case("yes"))
    }
}

/// Reads the variables of a loader file: `name="value"` or `name=value`
/// lines; comments and anything else are skipped, as the loader skips
/// them. A later line wins.
pub fn parse(text: &str) -> LoaderVars {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.split_once('"').map(|(v, _)| v))
            .unwrap_or(v);
        vars.insert(k.trim().to_owned(), v.to_owned());
    }
    LoaderVars { vars }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vars_round_trip_through_the_loader_files() {
        let rc = system_vars("abc-system-x", None, Some(3));
        assert_eq!(
            rc,
            "fruix.system=\"/frx/store/abc-system-x\"\nfruix.digest=\"abc\"\nfruix.generation=\"3\"\n\
             init_path=\"/sbin/init\"\n\
             init_script=\"/frx/store/abc-system-x/libexec/fruix-first-activation\"\n"
        );
        let pid1 = system_vars("abc-system-x", Some("def-fruix-agent-0.1.0"), None);
        assert!(pid1.ends_with("init_path=\"/frx/store/def-fruix-agent-0.1.0/bin/fruix-agent\"\n"));
        let n = parse(&nextboot_text(&rc));
        assert!(n.enabled());
        assert_eq!(
            (n.system(), n.generation()),
            (Some("abc-system-x"), Some(3))
        );
        // What the loader leaves after reading it: the first line
        // rewritten in place, padded to its old length.
        assert_eq!(NEXTBOOT_YES.len(), NEXTBOOT_NO.len());
        let read = nextboot_text(&rc).replacen(NEXTBOOT_YES, NEXTBOOT_NO, 1);
        let n = parse(&read);
        assert!(!n.enabled());
        assert_eq!(n.generation(), Some(3));
        let l = parse(&local_text(&pid1));
        assert_eq!((l.system(), l.generation()), (Some("abc-system-x"), None));
        assert_eq!(parse("# x=1\nbad line\nk=v # c\n").vars.len(), 1);
    }
}
