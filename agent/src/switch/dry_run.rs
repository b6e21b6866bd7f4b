//! `fruix-agent switch --dry-run`: what a switch would change, changing
//! nothing: activation's dry run towards the new system, and the services
//! it would start, stop and restart.

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
