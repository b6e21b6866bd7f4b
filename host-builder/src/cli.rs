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
}

/// `fruix system ...`.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Realize a declaration's packages into OUT/frx and write its system
    /// item; prints the system item's path.
    Build(BuildArgs),
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
    /// The fruix-agent binary [default: next to this fruix].
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
