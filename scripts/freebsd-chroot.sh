# shellcheck shell=bash
# Sourced by scripts/check-freebsd and scripts/build-freebsd-agent: the
# Debian trixie chroot with Debian's own Rust (rustc-web, rust-web-src)
# that both use, as ../shared/facts/freebsd-typecheck.md measured, made
# once and kept in CACHE/freebsd-check (CACHE = $FRUIX_CACHE_DIR, else
# ~/.cache/fruix), with the repository bind-mounted at /work and cargo's
# target directory in the repository's own target/freebsd (one per
# checkout: cargo judges freshness by mtimes, and a target directory
# shared by checkouts mounted at the same path could take one's build
# for another's). Needs root.
#
# Sets: here (the repository), cache, chroot_dir; defines run (a command
# in the chroot, at /work) and unmounts on exit. Two users of the chroot
# must not run at once (the bind mount is shared): a lock keeps them apart.

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${FRUIX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fruix}/freebsd-check
chroot_dir=$cache/chroot

if [ "$(id -u)" != 0 ]; then
    say "needs root (mmdebstrap, chroot, bind mounts)"
    exit 2
fi
mkdir -p "$cache"
exec 9>"$cache/lock"
flock 9
command -v mmdebstrap >/dev/null || {
    say "installing mmdebstrap"
    apt-get update -qq && apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
}

# Mounts a killed run left behind: unmounted first, so that nothing is
# stacked on them and a rebuild of the chroot never deletes through them.
for m in "$chroot_dir/work" "$chroot_dir/proc"; do
    while mountpoint -q "$m" 2>/dev/null; do umount "$m" || umount -l "$m"; done
done

# The layout before target/freebsd: a shared target directory and output.
rm -rf --one-file-system "$chroot_dir/root/target-freebsd" "$cache/out"

if [ ! -x "$chroot_dir/usr/bin/cargo" ]; then
    mirror=$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)\/*$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
    say "making the trixie chroot with Debian's Rust in $chroot_dir"
    rm -rf --one-file-system "$chroot_dir"
    mmdebstrap --mode=root --variant=apt \
        --include=rustc-web,cargo-web,rust-web-src,rust-web-clippy,ca-certificates \
        trixie "$chroot_dir" "${mirror:-http://deb.debian.org/debian}" >&2
fi
# The host's resolver and extra certificate authorities (cargo fetches crates).
cp /etc/resolv.conf "$chroot_dir/etc/resolv.conf"
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$chroot_dir/usr/local/share/ca-certificates/"
    chroot "$chroot_dir" update-ca-certificates >/dev/null 2>&1
fi

mkdir -p "$chroot_dir/work" "$chroot_dir/proc"
cleanup() {
    umount "$chroot_dir/work" 2>/dev/null || true
    umount "$chroot_dir/proc" 2>/dev/null || true
}
trap cleanup EXIT
mount --bind /proc "$chroot_dir/proc"
mount --bind "$here" "$chroot_dir/work"

# Runs "$*" in the chroot, at /work, with RUSTC_BOOTSTRAP=1 (-Zbuild-std)
# and the kept target directory; extra VAR=VALUE words in $RUN_ENV.
run() {
    # shellcheck disable=SC2086 # RUN_ENV is a list of VAR=VALUE words
    chroot "$chroot_dir" env HOME=/root RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=/work/target/freebsd \
        PATH=/usr/bin:/bin ${RUN_ENV:-} sh -c "cd /work && $*"
}
