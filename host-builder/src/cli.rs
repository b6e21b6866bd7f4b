//! The command line of `fruix`, as clap derive types. Doc comments are the
//! help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Build Fruix systems: store items, system items, disk images.
#[derive(Debug, Parser)]
#[command(name = "fruix", version, max_term_width = 80)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `fruix`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with a store root: import, verify, list.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Build systems from declarations.
    #[command(subcommand)]
    System(SystemCommand),
    /// List what remains of old install prefixes in an item.
    ScanPrefixes(ScanArgs),
    /// Ask a guest over SSH whether it is ready (`fruix-agent status`).
    /// Exit 0 ready, 1 not ready, 2 unreachable or error.
    Query(QueryArgs),
}

/// Arguments of `fruix query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The guest, as [USER@]HOST[:PORT] (user root, port 22 by default).
    #[arg(long, value_name = "TARGET")]
    pub ssh: String,
    /// The private key to log in with.
    #[arg(short = 'i', long = "identity", value_name = "KEY")]
    pub identity: Option<PathBuf>,
    /// Keep trying for S seconds while the guest is unreachable or its
    /// checks are pending [default: ask once].
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub wait: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The known_hosts file that pins the guest's host keys (`fruix
    /// system vm` writes HOST.known_hosts beside the console log). By
    /// default the user's own known_hosts. Either way the check is
    /// strict: a key not pinned there is refused at once (exit 2).
    #[arg(long, value_name = "FILE", conflicts_with = "any_host_key")]
    pub known_hosts: Option<PathBuf>,
    /// Accept any host key and remember none: an explicit opt-out of the
    /// host key check, for a guest whose keys cannot be pinned. Whoever
    /// answers on the port is believed.
    #[arg(long)]
    pub any_host_key: bool,
}

/// `fruix system ...`.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Realize a declaration's packages into OUT/frx and write its system
    /// item; prints the system item's path.
    Build(BuildArgs),
    /// Build the system, then write its bootable GPT disk image(s) to
    /// OUT/HOST.raw, .qcow2 or .vhd; prints their paths.
    Image(ImageArgs),
    /// Boot an image (or build and boot a declaration) under QEMU, wait
    /// for the agent's ready line on the serial console and print its
    /// report. Exit 0 ready, 1 not ready, 2 error.
    ///
    /// Exit status: 0 when the guest reported ready (or degraded). 1 when
    /// the guest booted and is not ready: it reported not ready, gave no
    /// ready line within --timeout, stopped or panicked (QEMU exited 0),
    /// or the wait was interrupted. 2 for a failure on the host, with one
    /// line on stderr: no image, QEMU missing or exiting with an error
    /// (it could not start the machine), --accel kvm where KVM cannot run
    /// a guest, no OVMF firmware, a build or tool that failed. The disk's
    /// format (raw, qcow2, vhd) is read from its header, not its name.
    Vm(VmArgs),
    /// Build the system and deploy it to a running guest: only the items
    /// it lacks are sent, then `fruix-agent switch` activates it, brings
    /// Shepherd's services in line and keeps it only if it becomes ready
    /// within --confirm-timeout. Exit 0 committed and ready, 1 rolled back
    /// (the new generation's failed checks and the old one's readiness are
    /// printed), 2 error (unreachable, host key, refused, bad
    /// declaration).
    Deploy(DeployArgs),
    /// List a guest's generations (`fruix-agent generations`).
    Generations(RemoteArgs),
    /// Roll a guest back to its previous committed generation, through the
    /// same gated switch as a deploy. Exit as deploy.
    Rollback(RemoteArgs),
}

/// How to reach a guest over SSH.
#[derive(Debug, Args)]
pub struct SshArgs {
    /// The guest, as [USER@]HOST[:PORT] (user root, port 22 by default).
    #[arg(long, value_name = "TARGET")]
    pub ssh: String,
    /// The private key to log in with.
    #[arg(short = 'i', long = "identity", value_name = "KEY")]
    pub identity: Option<PathBuf>,
    /// The known_hosts file that pins the guest's host keys (`fruix
    /// system vm` writes HOST.known_hosts) [default: the user's own]. A
    /// key not pinned there is refused at once (exit 2).
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
}

/// Arguments of `fruix system generations` and `rollback`.
#[derive(Debug, Args)]
pub struct RemoteArgs {
    /// The guest.
    #[command(flatten)]
    pub ssh: SshArgs,
    /// Seconds the generation switched to has to become ready (rollback).
    #[arg(long, value_name = "S", default_value_t = 120)]
    pub confirm_timeout: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `fruix system deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// What to build.
    #[command(flatten)]
    pub build: BuildArgs,
    /// The guest.
    #[command(flatten)]
    pub ssh: SshArgs,
    /// Seconds the new generation has to become ready before it is rolled
    /// back.
    #[arg(long, value_name = "S", default_value_t = 120)]
    pub confirm_timeout: u64,
    /// Print the plan (items to send, /etc changes, services to start,
    /// stop and restart) and change nothing.
    #[arg(long, conflicts_with_all = ["boot", "reboot"])]
    pub dry_run: bool,
    /// Switch nothing now: the new generation becomes the next boot's
    /// first try (a counted boot entry, blessed when that boot is ready).
    #[arg(long, conflicts_with = "reboot")]
    pub boot: bool,
    /// As --boot, then reboot the guest, wait for it, and report the
    /// generation it came up in (exit 1 when it fell back).
    #[arg(long)]
    pub reboot: bool,
}

/// Arguments of `fruix system vm`.
#[derive(Debug, Args)]
pub struct VmArgs {
    /// A disk image (raw, qcow2 or vhd, told apart by their headers), or a
    /// declaration (.toml) to build first (then --out is needed).
    #[arg(value_name = "IMAGE|DECL")]
    pub target: PathBuf,
    /// Output directory when building a declaration.
    #[arg(long, value_name = "OUT")]
    pub out: Option<PathBuf>,
    /// The fruix-agent binary, when building, built for the declared os
    /// [default: next to this fruix].
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
    /// Where downloaded .debs are kept, when building.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Accelerator: KVM when it can run a guest here, else TCG.
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: crate::vm::Accel,
    /// Firmware [default: the declaration's image.firmware; uefi for an
    /// image].
    #[arg(long, value_enum)]
    pub firmware: Option<crate::declaration::Firmware>,
    /// Guest memory in MiB.
    #[arg(long, value_name = "M", default_value_t = 1024)]
    pub memory: u64,
    /// Virtual CPUs.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub cpus: u32,
    /// Host port (on 127.0.0.1) forwarded to the guest's sshd [default: a
    /// free one].
    #[arg(long, value_name = "P", default_value_t = 0)]
    pub ssh_port: u16,
    /// Seconds to wait for the ready line.
    #[arg(long, value_name = "S", default_value_t = 300)]
    pub timeout: u64,
    /// Stop the guest once it has reported (else it runs until Ctrl-C).
    #[arg(long)]
    pub stop_when_ready: bool,
    /// Let the guest write its image (no snapshot: deploys, boot entries
    /// and try counters stay) and reboot: under UEFI systemd-boot picks
    /// the entry; a direct boot is started again from the ESP's default
    /// entry. Boot a copy: the image is changed.
    #[arg(long)]
    pub persistent: bool,
    /// Boot again, up to N times, when the guest kernel panics before the
    /// agent reports (QEMU 7.2's TCG crashes a guest now and then; the
    /// console of each panic is kept).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retries: u32,
    /// An extra kernel parameter (direct boot); give it once per parameter.
    #[arg(long, value_name = "PARAM")]
    pub append: Vec<String>,
    /// Where the serial console is written [default: beside the image,
    /// HOST.console.log].
    #[arg(long, value_name = "PATH")]
    pub console_log: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Show no progress.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Arguments of `fruix system image`.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// What to build.
    #[command(flatten)]
    pub build: BuildArgs,
    /// Image format; give it once per format [default: the
    /// declaration's image.formats].
    #[arg(long = "format", value_name = "FORMAT")]
    pub formats: Vec<crate::declaration::ImageFormat>,
    /// Write a fixed-size VHD instead of a dynamic one.
    #[arg(long)]
    pub vhd_fixed: bool,
}

/// Arguments of `fruix system build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The declaration (TOML).
    #[arg(value_name = "DECL")]
    pub declaration: PathBuf,
    /// The output directory; the store root is OUT/frx.
    #[arg(long, value_name = "OUT")]
    pub out: PathBuf,
    /// The fruix-agent binary, built for the declared os [default: next
    /// to this fruix].
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
    /// Where downloaded .debs are kept [default: $FRUIX_CACHE_DIR, else
    /// $XDG_CACHE_HOME/fruix, else ~/.cache/fruix].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Worker threads [default: all cores].
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Print a JSON report instead of the path.
    #[arg(long)]
    pub json: bool,
    /// Show no progress.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Arguments of `fruix scan-prefixes`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// The item (or any directory) to scan.
    #[arg(value_name = "ITEM")]
    pub item: PathBuf,
    /// An old prefix to look for; give it once per prefix.
    #[arg(long = "prefix", value_name = "P", required = true)]
    pub prefixes: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `fruix store ...`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Import a directory or tar archive (plain, gzip, xz, zstd) as an item;
    /// prints the item's path.
    Import(ImportArgs),
    /// Verify items against their manifests. Exit 0 clean, 1 findings,
    /// 2 error.
    Verify(VerifyArgs),
    /// List the items of a root with their sizes.
    List(ListArgs),
}

/// Arguments of `fruix store import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The store root (holds store/ and var/db/fruix/).
    #[arg(long, value_name = "ROOT")]
    pub root: PathBuf,
    /// The package name with its version, e.g. shepherd-1.0.3.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Worker threads for copying and hashing [default: all cores].
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Print a JSON object instead of the path.
    #[arg(long)]
    pub json: bool,
    /// The directory or archive to import.
    #[arg(value_name = "SRC")]
    pub src: PathBuf,
}

/// Arguments of `fruix store verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The store root.
    #[arg(long, value_name = "ROOT")]
    pub root: PathBuf,
    /// Check types, modes, sizes and link targets only; read no file.
    #[arg(long)]
    pub metadata_only: bool,
    /// Worker threads [default: all cores].
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Print a JSON report instead of one finding per line.
    #[arg(long)]
    pub json: bool,
    /// Items to verify, by name or path [default: the whole root].
    #[arg(value_name = "ITEM")]
    pub items: Vec<String>,
}

/// Arguments of `fruix store list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The store root.
    #[arg(long, value_name = "ROOT")]
    pub root: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_fits_80_columns() {
        fn check(cmd: &mut clap::Command) {
            for line in cmd.render_long_help().to_string().lines() {
                assert!(
                    line.chars().count() <= 80,
                    "{}: too wide: {line}",
                    cmd.get_name()
                );
            }
            for sub in cmd.get_subcommands_mut() {
                check(sub);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        check(&mut cmd);
    }
}
