//! What verification reports: the kinds of difference, one finding, and the
//! one-line form `fruix store verify` prints.

use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::Serialize;

use crate::escape::escape;

/// The kinds of difference verification reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// An entry of the manifest is not on disk.
    Missing,
    /// An entry on disk is not in the manifest.
    Unexpected,
    /// An entry is of another type than the manifest says.
    TypeChanged,
    /// A file or directory has other permission bits.
    ModeChanged,
    /// A file has another size.
    SizeChanged,
    /// A file has the right size but other content.
    ContentChanged,
    /// A symbolic link points elsewhere.
    LinkChanged,
    /// An entry could not be read; the error is in `found`.
    IoError,
    /// An item has no manifest.
    ManifestMissing,
    /// A manifest is not in canonical form.
    ManifestInvalid,
    /// A manifest does not hash to the digest in its item's name.
    ManifestMismatch,
    /// An item's content differs from its manifest (one per item, after
    /// the entry findings that say how).
    ItemDiffers,
    /// Something in the store directory that is not an item.
    UnexpectedItem,
    /// An item that was asked for, or that has a manifest, is not there.
    ItemMissing,
}

impl FindingKind {
    /// The word used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Missing => "missing",
            FindingKind::Unexpected => "unexpected",
            FindingKind::TypeChanged => "type-changed",
            FindingKind::ModeChanged => "mode-changed",
            FindingKind::SizeChanged => "size-changed",
            FindingKind::ContentChanged => "content-changed",
            FindingKind::LinkChanged => "link-changed",
            FindingKind::IoError => "io-error",
            FindingKind::ManifestMissing => "manifest-missing",
            FindingKind::ManifestInvalid => "manifest-invalid",
            FindingKind::ManifestMismatch => "manifest-mismatch",
            FindingKind::ItemDiffers => "item-differs",
            FindingKind::UnexpectedItem => "unexpected-item",
            FindingKind::ItemMissing => "item-missing",
        }
    }
}

/// One difference between the store and its manifests.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Finding {
    /// The path it is about, escaped as in manifests (one line, always).
    pub path: String,
    /// What kind of difference.
    pub kind: FindingKind,
    /// What the manifest says, where that is one value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// What is there instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
}

impl fmt::Display for Finding {
    /// `KIND PATH [expected -> found]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.path)?;
        match (&self.expected, &self.found) {
            (Some(e), Some(x)) => write!(f, " {e} -> {x}"),
            (None, Some(x)) => write!(f, " -> {x}"),
            (Some(e), None) => write!(f, " {e} ->"),
            (None, None) => Ok(()),
        }
    }
}

/// A finding tagged with the index of the target it belongs to, so that
/// each item's `item-differs` can count its own.
pub(super) type Tagged = (usize, Finding);

/// A finding about `path`, escaped so that the report stays one line per
/// finding whatever bytes the path holds.
pub(super) fn finding(
    kind: FindingKind,
    path: &Path,
    expected: Option<String>,
    found: Option<String>,
) -> Finding {
    Finding {
        path: escape(path.as_os_str().as_bytes()),
        kind,
        expected,
        found,
    }
}
