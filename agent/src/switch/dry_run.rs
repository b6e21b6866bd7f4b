//! `fruix-agent switch --dry-run`: what a switch would change, changing
//! nothing: activation's dry run towards the new system, and the services
//! it would start, stop and restart. A system the guest lacks is read
//! from the builder's stream of that one item into a private temporary
//! directory, checked against its name, and previewed from there.

use fruix_activation::GuestRoot;
use fruix_system::switch::ServicePlan;
use serde::Serialize;

use super::SwitchError;
use super::plan::{plan, service_files};

/// What a switch to a system would do.
#[derive(Clone, Debug, Serialize)]
pub struct Preview {
    /// The current system.
    pub from: String,
    /// The system switched to.
    pub to: String,
    /// What activation would change, one line each, by step.
    pub activation: Vec<(String, String)>,
    /// The services it would start, stop and restart.
    pub services: ServicePlan,
}

/// The preview of a switch of `root` to `to`.
pub fn preview(root: &GuestRoot, to: &str) -> Result<Preview, SwitchError> {
    let from = super::current_system(root)?;
    crate::system::SystemView::load(root, to)?;
    let dry = root.clone().dry_run();
    let platform = fruix_activation::platform::native();
    let ledger = fruix_activation::activate(&dry, to, platform.as_ref());
    let activation = ledger
        .steps
        .iter()
        .flat_map(|s| {
            s.changes
                .iter()
                .map(|c| (s.step.clone(), c.clone()))
                .chain(
                    s.error
                        .iter()
                        .map(|e| (s.step.clone(), format!("error: {e}"))),
                )
                .collect::<Vec<_>>()
        })
        .collect();
    let services = if from == to {
        ServicePlan::default()
    } else {
        plan(
            &service_files(&root.path(&from))?,
            &service_files(&root.path(to))?,
        )
    };
    Ok(Preview {
        from,
        to: to.to_owned(),
        activation,
        services,
    })
}

/// The preview of a switch of `root` to `to`, a system item the guest
/// lacks, read from `input` (the builder's compressed stream of that one
/// item) into a private temporary directory that is removed afterwards.
/// Nothing is written to the store.
pub fn preview_streamed(
    root: &GuestRoot,
    to: &str,
    input: impl std::io::Read,
) -> Result<Preview, SwitchError> {
    let name = to
        .strip_prefix("/frx/store/")
        .and_then(|n| fruix_store::ItemName::parse(n).ok())
        .ok_or_else(|| SwitchError::State(format!("{to}: not a store item")))?;
    let tmp = tempfile::Builder::new()
        .prefix("fruix-preview-")
        .tempdir()
        .map_err(|source| SwitchError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
    let store = fruix_store::StoreRoot::new(tmp.path());
    // The closure is not the preview's business: its items are the
    // guest's or the deploy's to send.
    fruix_store::transfer::receive_compressed(
        &store,
        &name,
        &|_| Ok(Vec::new()),
        input,
        &mut |_| {},
    )
    .map_err(SwitchError::Preview)?;
    let seen = root.clone().dry_run_with(to, store.item_path(&name));
    let p = preview(&seen, to);
    // Items are sealed read-only: removed by the store's own remover, not
    // by TempDir's drop, which would leave them where it cannot write.
    let dir = tmp.keep();
    fruix_store::remove_tree(&dir).map_err(|source| SwitchError::Io { path: dir, source })?;
    p
}
