//! What a switch does to Shepherd's services: the builder writes one file
//! per service, `etc/shepherd/services/NAME.scm`, whose bytes depend only
//! on that service's declaration, so that comparing two system items' files
//! says which services were added, removed or changed. Shepherd cannot
//! compare definitions itself (they are closures), and NixOS's switch
//! compares unit files the same way.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use fruix_system::switch::ServicePlan;

use crate::error::AgentError;

/// Where a system item keeps its services' definitions.
pub use fruix_system::SHEPHERD_SERVICES_DIR as SERVICES_DIR;

/// Services never touched by a switch: `root` is Shepherd itself.
const NEVER: &[&str] = &["root"];

/// The service files of the system item at `system_dir`, by service
/// name. A system item without the directory (built before it existed)
/// has none.
pub fn service_files(system_dir: &Path) -> Result<BTreeMap<String, Vec<u8>>, AgentError> {
    let dir = system_dir.join(SERVICES_DIR);
    let io = |source| AgentError::Io {
        path: dir.clone(),
        source,
    };
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(io(e)),
    };
    let mut out = BTreeMap::new();
    for e in rd {
        let e = e.map_err(io)?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(service) = name.strip_suffix(".scm") else {
            continue;
        };
        if NEVER.contains(&service) {
            continue;
        }
        let p = e.path();
        let bytes = fs::read(&p).map_err(|source| AgentError::Io { path: p, source })?;
        out.insert(service.to_owned(), bytes);
    }
    Ok(out)
}

/// The plan that takes the services of `old` to those of `new`: each list
/// sorted by name.
pub fn plan(old: &BTreeMap<String, Vec<u8>>, new: &BTreeMap<String, Vec<u8>>) -> ServicePlan {
    let mut p = ServicePlan::default();
    for (name, bytes) in new {
        match old.get(name) {
            None => p.start.push(name.clone()),
            Some(b) if b != bytes => p.restart.push(name.clone()),
            Some(_) => {}
        }
    }
    p.stop = old
        .keys()
        .filter(|n| !new.contains_key(*n))
        .cloned()
        .collect();
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, items: &[(&str, &str)]) {
        let d = dir.join(SERVICES_DIR);
        fs::create_dir_all(&d).unwrap();
        for (n, t) in items {
            fs::write(d.join(n), t).unwrap();
        }
    }

    #[test]
    fn added_removed_and_changed_services_are_told_apart() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        files(
            &a,
            &[
                ("sshd.scm", "s1"),
                ("old.scm", "o"),
                ("web.scm", "w1"),
                ("same.scm", "x"),
            ],
        );
        files(
            &b,
            &[
                ("sshd.scm", "s1"),
                ("new.scm", "n"),
                ("web.scm", "w2"),
                ("same.scm", "x"),
                ("README", "r"),
            ],
        );
        let p = plan(&service_files(&a).unwrap(), &service_files(&b).unwrap());
        assert_eq!(p.start, ["new"]);
        assert_eq!(p.stop, ["old"]);
        assert_eq!(p.restart, ["web"]);
        let back = plan(&service_files(&b).unwrap(), &service_files(&a).unwrap());
        assert_eq!(back, p.reversed());
    }

    #[test]
    fn a_system_without_service_files_has_none() {
        let t = tempfile::tempdir().unwrap();
        assert!(service_files(t.path()).unwrap().is_empty());
        files(t.path(), &[("root.scm", "r")]);
        assert!(service_files(t.path()).unwrap().is_empty());
    }
}
