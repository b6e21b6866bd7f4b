//! The `[image]` section, and the `os` it must boot: sizes, firmware and
//! formats.

use toml::Spanned;

use crate::declaration::error::{DeclError, Locator};
use crate::declaration::{Firmware, ImageSettings, Os, parse_size};

/// Space the image keeps beside the root partition: the EFI system
/// partition and GPT alignment and tables.
pub const NON_ROOT_SPACE: u64 = (128 << 20) + (2 << 20);

/// The image's sizes in bytes, as the checks read them.
pub(super) struct Sizes {
    /// The disk's capacity.
    pub(super) capacity: u64,
    /// The root partition's size.
    pub(super) root_size: u64,
}

/// Checks the sizes (the root partition at least 64m and fitting beside
/// the EFI system partition), that `os` can boot with the firmware, and
/// that at least one format is given.
pub(super) fn check(
    at: &Locator<'_>,
    img: &ImageSettings,
    os: &Spanned<Os>,
) -> Result<Sizes, DeclError> {
    let capacity = parse_size(img.capacity.get_ref())
        .map_err(|m| at.error(&img.capacity.span(), format!("`image.capacity`: {m}")))?;
    let root_size = parse_size(img.root_size.get_ref())
        .map_err(|m| at.error(&img.root_size.span(), format!("`image.root-size`: {m}")))?;
    if root_size < (64 << 20) {
        return Err(at.error(
            &img.root_size.span(),
            "`image.root-size`: must be at least 64m".to_owned(),
        ));
    }
    if root_size.saturating_add(NON_ROOT_SPACE) > capacity {
        return Err(at.error(
            &img.root_size.span(),
            format!(
                "`image.root-size`: {} does not fit in `image.capacity` {} beside the 128m EFI system partition",
                img.root_size.get_ref(),
                img.capacity.get_ref()
            ),
        ));
    }
    // QEMU can load a Linux kernel itself, not a FreeBSD one: FreeBSD's
    // kernel is started by its loader, which UEFI firmware starts.
    if *os.get_ref() == Os::Freebsd && img.firmware == Firmware::Direct {
        return Err(at.error(
            &os.span(),
            "`os`: a FreeBSD system boots through loader.efi: set `image.firmware = \"uefi\"`"
                .to_owned(),
        ));
    }
    if img.formats.is_empty() {
        return Err(at.error(
            &img.capacity.span(),
            "`image.formats`: give at least one format".to_owned(),
        ));
    }
    Ok(Sizes {
        capacity,
        root_size,
    })
}
