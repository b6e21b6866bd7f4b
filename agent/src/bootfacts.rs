//! This boot's facts as the report tells them: a leaf that the report,
//! the boot entries and the daemon all use.

use serde::{Deserialize, Serialize};

/// This boot, as the report tells it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootFacts {
    /// The generation the boot line named.
    pub generation: Option<u64>,
    /// Its entry: `blessed`, `trying` (counted), `bad`, `none` (no entry
    /// of ours: direct boot of an old image, no ESP) or `unknown` (the
    /// ESP could not be read, with `error`).
    pub entry: String,
    /// A newer generation whose entry ran out of tries, so that this boot
    /// is a fallback from it.
    pub fallback_from: Option<u64>,
    /// The tries that newer entry used.
    pub tries_failed: u32,
    /// Why the ESP could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
