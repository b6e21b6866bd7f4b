//! Checks of a parsed declaration as a whole: references between packages,
//! cycles, globs, sources, accounts, services, agent and image settings.
//! Each error points at the value it is about.
//!
//! One module per section of the declaration; `check` runs them in a
//! fixed order and stops at the first error, so that each input has one
//! error, always the same. The section modules share no helper but the
//! error constructor of `declaration::error` and the checks of `text`:
//! every free-form string that reaches a generated file goes through
//! `text::check_text` (no control character), every public key through
//! `text::check_key`.

mod accounts;
mod agent;
mod image;
mod packages;
mod services;
mod system;
mod text;

use std::path::Path;

use super::error::{DeclError, Locator};
use super::{Declaration, Loaded};

pub use accounts::BASE_GROUPS;
pub use image::NON_ROOT_SPACE;
pub use packages::{MATERIALIZE_RULES, compile_glob};

/// Checks a parsed declaration, section by section, and returns it with
/// what the checks computed: the packages' order and the image's sizes.
pub(super) fn check(at: &Locator<'_>, decl: Declaration) -> Result<Loaded, DeclError> {
    system::check_host_name(at, &decl.host_name)?;
    let order = packages::check(at, &decl)?;
    services::check(at, &decl.services)?;
    accounts::check(at, &decl.groups, &decl.users)?;
    system::check_setuid_programs(at, &decl.setuid_programs)?;
    services::check_declared(at, &decl)?;
    let declared: Vec<&str> = decl
        .services
        .declared
        .keys()
        .map(|k| k.get_ref().as_str())
        .collect();
    agent::check(at, &decl.agent, &declared)?;
    let sizes = image::check(at, &decl.image, &decl.os)?;

    Ok(Loaded {
        file: at.file.to_owned(),
        base_dir: at
            .file
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."))
            .to_owned(),
        order,
        capacity: sizes.capacity,
        root_size: sizes.root_size,
        decl,
    })
}
