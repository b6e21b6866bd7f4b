//! `fruix-agent boot-entries` (the ESP's loader entries, or FreeBSD's
//! loader files, the one the next boot starts, this boot's id and facts)
//! and `fruix-agent reboot`.

use std::io::Write;

use anyhow::{Context, Result};
use fruix_activation::GuestRoot;
use fruix_agent::bootcheck::{self, Loader};
use fruix_agent::{bootentries, nextboot};
use fruix_system::bootentry::default_entry;
use serde::Serialize;

/// What `boot-entries --json` prints.
#[derive(Serialize)]
struct Listing {
    boot_id: Option<String>,
    entries: Vec<String>,
    default: Option<String>,
    boot: bootentries::BootFacts,
}

/// Lists the boot entries.
pub fn list(json: bool) -> Result<bool> {
    let root = GuestRoot::new("/");
    let (entries, default) = match bootcheck::loader(&root)?
        .context("this guest has no boot entries of ours (no EFI system partition)")?
    {
        Loader::Esp(esp) => {
            let mut names = bootentries::entries(&esp)?;
            names.sort_by(fruix_system::bootentry::boot_order);
            (
                names.iter().map(ToString::to_string).collect(),
                default_entry(&names).map(|n| n.to_string()),
            )
        }
        Loader::Nextboot => nextboot::listing(&root)?,
    };
    let listing = Listing {
        boot_id: fruix_agent::platform::boot_id(),
        default,
        entries,
        boot: bootcheck::boot_facts(&root, fruix_agent::switch::generation_of(&root)),
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(&listing)?)?;
    } else {
        for e in &listing.entries {
            let mark = if listing.default.as_deref() == Some(e) {
                " (default)"
            } else {
                ""
            };
            writeln!(out, "{e}{mark}")?;
        }
    }
    Ok(true)
}

/// Reboots the guest the way its boot mode does.
pub fn reboot() -> Result<bool> {
    let root = GuestRoot::new("/");
    let system = fruix_agent::switch::current_system(&root)?;
    let view = fruix_agent::system::SystemView::load(&root, &system)?;
    println!("rebooting");
    let _ = std::io::stdout().flush();
    let e = bootcheck::reboot(&root, &view.config.boot_mode);
    Err(e).context("reboot")
}
