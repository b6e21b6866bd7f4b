//! Where things go on the disk, and the identifiers derived from the
//! system digest that make two builds of one system byte-identical.

use sha2::{Digest as _, Sha256};

/// One mebibyte.
pub const MIB: u64 = 1 << 20;

/// Size of the EFI system partition.
pub const ESP_SIZE: u64 = 128 * MIB;

/// The GPT partition layout of an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Size of the disk: the declared capacity rounded up to 2 MiB, which
    /// VHD needs (XCP-ng refuses other sizes) and costs nothing elsewhere.
    pub disk_size: u64,
    /// Offset of the EFI system partition (1 MiB, the usual alignment).
    pub esp_offset: u64,
    /// Offset of the root partition, right after the ESP.
    pub root_offset: u64,
    /// Size of the root partition, rounded down to 1 MiB.
    pub root_size: u64,
}

impl Layout {
    /// The layout for a capacity and root size; `None` when the root does
    /// not fit (the declaration's checks refuse that first).
    pub fn new(capacity: u64, root_size: u64) -> Option<Layout> {
        let disk_size = capacity.div_ceil(2 * MIB) * 2 * MIB;
        let esp_offset = MIB;
        let root_offset = esp_offset + ESP_SIZE;
        let root_size = root_size / MIB * MIB;
        // The backup GPT takes the last 33 sectors; keep the last MiB free.
        (root_offset + root_size + MIB <= disk_size && root_size > 0).then_some(Layout {
            disk_size,
            esp_offset,
            root_offset,
            root_size,
        })
    }

    /// The `sfdisk` script of the partition table; `root_type` is the root
    /// partition's type (an `sfdisk` alias or a GUID).
    pub fn sfdisk_script(&self, ids: &Ids, root_type: &str) -> String {
        format!(
            "label: gpt\nlabel-id: {disk}\nunit: sectors\nfirst-lba: 2048\n\
             start={esp_start}, size={esp_size}, type=uefi, uuid={esp}, name=\"EFI system\"\n\
             start={root_start}, size={root_size}, type={root_type}, uuid={root}, name=\"fruix-root\"\n",
            disk = ids.disk,
            esp = ids.esp_part,
            root = ids.root_part,
            esp_start = self.esp_offset / 512,
            esp_size = ESP_SIZE / 512,
            root_start = self.root_offset / 512,
            root_size = self.root_size / 512,
        )
    }
}

/// Identifiers of one image, each derived from the system item's digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ids {
    /// The GPT disk GUID.
    pub disk: String,
    /// The ESP's partition GUID.
    pub esp_part: String,
    /// The root partition's GUID.
    pub root_part: String,
    /// The root file system's UUID.
    pub root_fs: String,
    /// The ext4 directory hash seed.
    pub hash_seed: String,
    /// The FAT volume id (8 hex digits).
    pub fat_volume: String,
    /// The VHD footer's UUID, as 16 bytes.
    pub vhd: [u8; 16],
}

impl Ids {
    /// The identifiers for a system digest (hex).
    pub fn new(digest: &str) -> Ids {
        let bytes = |what: &str| -> [u8; 16] {
            let h = Sha256::digest(format!("fruix-image-v1\n{what}\n{digest}\n").as_bytes());
            let mut b = [0u8; 16];
            b.copy_from_slice(&h[..16]);
            // A random-form (version 4, RFC 4122 variant) UUID, so that
            // tools that check the form accept it.
            b[6] = (b[6] & 0x0f) | 0x40;
            b[8] = (b[8] & 0x3f) | 0x80;
            b
        };
        let uuid = |what: &str| format_uuid(&bytes(what));
        let vol = bytes("fat-volume");
        Ids {
            disk: uuid("disk"),
            esp_part: uuid("esp-partition"),
            root_part: uuid("root-partition"),
            root_fs: uuid("root-filesystem"),
            hash_seed: uuid("root-hash-seed"),
            fat_volume: format!("{:02x}{:02x}{:02x}{:02x}", vol[0], vol[1], vol[2], vol[3]),
            vhd: bytes("vhd"),
        }
    }
}

/// `8-4-4-4-12` lower-case hex.
pub fn format_uuid(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_rounds_up_to_two_mebibytes_and_root_fits() {
        let l = Layout::new(12 << 30, 10 << 30).unwrap();
        assert_eq!(l.disk_size, 12 << 30);
        assert_eq!(l.root_offset, 129 * MIB);
        let odd = Layout::new(400 * MIB + 5, 200 * MIB + 123).unwrap();
        assert_eq!(odd.disk_size, 402 * MIB);
        assert_eq!(odd.root_size, 200 * MIB);
        assert!(Layout::new(100 * MIB, 40 * MIB).is_none());
        assert!(Layout::new(200 * MIB, 70 * MIB).is_some());
        assert!(Layout::new(200 * MIB, 71 * MIB).is_none());
    }

    #[test]
    fn ids_depend_on_the_digest_only() {
        let a = Ids::new("ab12");
        assert_eq!(a, Ids::new("ab12"));
        assert_ne!(a.disk, Ids::new("ab13").disk);
        assert_ne!(a.disk, a.root_part);
        assert_eq!(a.disk.len(), 36);
        assert_eq!(&a.disk[14..15], "4");
        assert_eq!(a.fat_volume.len(), 8);
    }

    #[test]
    fn sfdisk_script_places_both_partitions() {
        let l = Layout::new(12 << 30, 10 << 30).unwrap();
        let s = l.sfdisk_script(&Ids::new("00"), "linux");
        assert!(s.contains("start=2048, size=262144, type=uefi"), "{s}");
        assert!(s.contains("start=264192, size=20971520, type=linux"), "{s}");
    }
}
