//! Malformed declarations: each case changes one thing in a valid
//! declaration and asserts the exact `FILE:LINE:COL: message`.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use fruix_host_builder::declaration;

const VALID: &str = r#"host-name = "box"
init = "shepherd-pid1"
kernel = "boot"
bootloader = "boot"
base-packages = ["runtime"]

[packages.world]
version = "1"
source = { type = "dir", path = "world" }

[packages.runtime]
from = "world"
prune = ["boot"]

[packages.boot]
from = "world"
keep = ["boot/*"]

[services.sshd]
port = 22
root-authorized-keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG8x test@host"]

[[groups]]
name = "staff"
gid = 50

[[users]]
name = "alice"
uid = 1000
group = "staff"
home = "/home/alice"

[agent]
store-verify = "metadata"
gate = ["sshd", "smoke"]

[[agent.probes]]
name = "smoke"
command = ["true"]

[image]
capacity = "2g"
root-size = "1g"
formats = ["raw", "qcow2"]
firmware = "direct"
"#;

/// A directory with the declaration's inputs (`world/`, `w.tar`, and
/// `bad.pub`, whose fourth line is not a bare key).
fn workdir() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir_all(t.path().join("world/boot")).unwrap();
    fs::write(t.path().join("w.tar"), b"").unwrap();
    fs::write(
        t.path().join("bad.pub"),
        "# root's keys\n\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG8x a@b\nfrom=\"10.0.0.1\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG8x\n",
    )
    .unwrap();
    let file = t.path().join("system.toml");
    (t, file)
}

fn parse(file: &Path, text: &str) -> Result<declaration::Loaded, String> {
    declaration::parse(file, text).map_err(|e| e.to_string())
}

#[test]
fn the_base_declaration_is_valid() {
    let (_t, file) = workdir();
    let l = parse(&file, VALID).unwrap();
    assert_eq!(l.order, ["world", "boot", "runtime"]);
    assert_eq!((l.capacity, l.root_size), (2 << 30, 1 << 30));
}

/// Replaces `from` by `to` in the valid declaration (which must contain
/// `from`), parses it and asserts the error, written with `FILE` for the
/// declaration's path.
fn refused(from: &str, to: &str, want: &str) {
    let (_t, file) = workdir();
    assert!(VALID.contains(from), "the case does not apply: {from}");
    let text = VALID.replacen(from, to, 1);
    let err = parse(&file, &text).unwrap_err();
    let dir = file.parent().unwrap().display().to_string();
    assert_eq!(
        err,
        want.replace("FILE", &file.display().to_string())
            .replace("DIR", &dir)
    );
    assert!(!err.contains('\n'), "one line: {err}");
}

macro_rules! case {
    ($name:ident, $from:expr, $to:expr, $want:expr) => {
        #[test]
        fn $name() {
            refused($from, $to, $want);
        }
    };
}

case!(
    unknown_top_level_key,
    "init = ",
    "colour = \"red\"\ninit = ",
    "FILE:2:1: unknown field `colour`, expected one of `host-name`, `os`, `init`, `kernel`, `bootloader`, `base-packages`, `packages`, `services`, `groups`, `users`, `setuid-programs`, `agent`, `image`"
);
case!(
    unknown_package_key,
    "from = \"world\"\nprune",
    "form = \"world\"\nprune",
    "FILE:12:1: unknown field `form`, expected one of `version`, `source`, `from`, `keep`, `prune`, `materialize`"
);
case!(
    unknown_user_key,
    "home = \"/home/alice\"",
    "homedir = \"/home/alice\"",
    "FILE:31:1: unknown field `homedir`, expected one of `name`, `uid`, `group`, `home`, `shell`, `comment`, `authorized-keys`"
);
case!(
    wrong_type_port,
    "port = 22",
    "port = \"22\"",
    "FILE:20:8: invalid type: string \"22\", expected i64"
);
case!(
    wrong_type_base_packages,
    "base-packages = [\"runtime\"]",
    "base-packages = \"runtime\"",
    "FILE:5:17: invalid type: string \"runtime\", expected a sequence"
);
case!(
    unknown_init_mode,
    "init = \"shepherd-pid1\"",
    "init = \"systemd\"",
    "FILE:2:8: unknown variant `systemd`, expected `shepherd-pid1` or `rc-shepherd`"
);
case!(
    unknown_os,
    "init = \"shepherd-pid1\"",
    "os = \"plan9\"\ninit = \"shepherd-pid1\"",
    "FILE:2:6: unknown variant `plan9`, expected `linux` or `freebsd`"
);
case!(
    missing_kernel,
    "kernel = \"boot\"\n",
    "",
    "FILE:1:1: missing field `kernel`"
);
case!(
    syntax_error,
    "host-name = \"box\"",
    "host-name = \"box",
    "FILE:1:17: invalid basic string, expected `\"`"
);
case!(
    bad_host_name,
    "host-name = \"box\"",
    "host-name = \"-box\"",
    "FILE:1:13: `host-name`: '-box' is not a host name (letters, digits and '-', 1 to 63 characters, no '-' at either end)"
);
case!(
    from_undeclared,
    "from = \"world\"\nprune",
    "from = \"wrold\"\nprune",
    "FILE:12:8: `packages.runtime.from`: names package 'wrold', which is not declared"
);
case!(
    cyclic_from,
    "[packages.boot]\nfrom = \"world\"",
    "[packages.boot]\nfrom = \"loop\"\n\n[packages.loop]\nfrom = \"boot\"\n\n[packages.x]\nfrom = \"world\"",
    "FILE:19:8: `packages.loop.from`: makes a cycle: boot -> loop -> boot"
);
case!(
    source_and_from,
    "from = \"world\"\nprune",
    "source = { type = \"dir\", path = \"world\" }\nfrom = \"world\"\nprune",
    "FILE:13:8: package 'runtime': give either `source` or `from`, not both"
);
case!(
    neither_source_nor_from,
    "from = \"world\"\nprune = [\"boot\"]",
    "version = \"2\"",
    "FILE:11:11: package 'runtime': has neither `source` nor `from`"
);
case!(
    keep_without_from,
    "source = { type = \"dir\", path = \"world\" }",
    "source = { type = \"dir\", path = \"world\" }\nkeep = [\"x\"]",
    "FILE:10:9: package 'world': `keep` and `prune` need `from`"
);
case!(
    bad_glob,
    "prune = [\"boot\"]",
    "prune = [\"usr/[inc\"]",
    "FILE:13:10: `packages.runtime.prune`: invalid glob 'usr/[inc': unclosed character class; missing ']'"
);
case!(
    absolute_glob,
    "keep = [\"boot/*\"]",
    "keep = [\"/boot/*\"]",
    "FILE:17:9: `packages.boot.keep`: glob '/boot/*' must be a non-empty relative path"
);
case!(
    dotdot_glob,
    "keep = [\"boot/*\"]",
    "keep = [\"../etc/*\"]",
    "FILE:17:9: `packages.boot.keep`: glob '../etc/*' must not contain '..'"
);
case!(
    kernel_undeclared,
    "kernel = \"boot\"",
    "kernel = \"vmlinuz\"",
    "FILE:3:10: `kernel`: names package 'vmlinuz', which is not declared"
);
case!(
    bootloader_undeclared,
    "bootloader = \"boot\"",
    "bootloader = \"grub\"",
    "FILE:4:14: `bootloader`: names package 'grub', which is not declared"
);
case!(
    base_package_undeclared,
    "base-packages = [\"runtime\"]",
    "base-packages = [\"runtime\", \"guile\"]",
    "FILE:5:29: `base-packages`: names package 'guile', which is not declared"
);
case!(
    base_package_twice,
    "base-packages = [\"runtime\"]",
    "base-packages = [\"runtime\", \"runtime\"]",
    "FILE:5:29: `base-packages`: 'runtime' is listed twice"
);
case!(
    unreadable_dir_source,
    "path = \"world\" }",
    "path = \"nowhere\" }",
    "FILE:9:10: `packages.world.source`: cannot read DIR/nowhere: No such file or directory (os error 2)"
);
case!(
    tar_source_is_a_directory,
    "type = \"dir\", path = \"world\"",
    "type = \"tar\", path = \"world\"",
    "FILE:9:10: `packages.world.source`: DIR/world is not an archive file"
);
case!(
    dir_source_is_a_file,
    "path = \"world\" }",
    "path = \"w.tar\" }",
    "FILE:9:10: `packages.world.source`: DIR/w.tar is not a directory"
);
case!(
    relative_host_path,
    "type = \"dir\", path = \"world\"",
    "type = \"host-path\", path = \"usr/local\"",
    "FILE:9:10: `packages.world.source`: host-path 'usr/local' must be absolute"
);
case!(
    unknown_source_type,
    "type = \"dir\", path = \"world\"",
    "type = \"git\", path = \"world\"",
    "FILE:9:19: unknown variant `git`, expected one of `dir`, `tar`, `debian`, `host-path`"
);
case!(
    debian_without_packages,
    "type = \"dir\", path = \"world\"",
    "type = \"debian\", suite = \"trixie\", packages = []",
    "FILE:9:10: `packages.world.source`: a debian source needs at least one package"
);
case!(
    debian_bad_package_name,
    "type = \"dir\", path = \"world\"",
    "type = \"debian\", suite = \"trixie\", packages = [\"Open SSH\"]",
    "FILE:9:10: `packages.world.source`: 'Open SSH' is not a Debian package name"
);
case!(
    debian_bad_mirror,
    "type = \"dir\", path = \"world\"",
    "type = \"debian\", suite = \"trixie\", packages = [\"bash\"], mirror = \"ftp.debian.org\"",
    "FILE:9:10: `packages.world.source`: mirror 'ftp.debian.org' is not an http, https or file URL"
);
case!(
    invalid_package_name,
    "[packages.world]",
    "[packages.\"wor ld\"]",
    "FILE:7:11: `packages`: invalid package name 'wor ld': it has a byte outside A-Z a-z 0-9 + . _ -"
);
case!(
    invalid_version,
    "version = \"1\"",
    "version = \"1 beta\"",
    "FILE:8:11: `packages.world.version`: invalid package name 'world-1 beta': it has a byte outside A-Z a-z 0-9 + . _ -"
);
case!(
    materialize_unknown_rule,
    "source = { type = \"dir\", path = \"world\" }",
    "source = { type = \"dir\", path = \"world\" }\nmaterialize = { prefix = \"/tmp/x\", rules = [\"python\"] }",
    "FILE:10:15: `packages.world.materialize`: unknown rule set 'python' (known: guile, guile-extra, shepherd)"
);
case!(
    materialize_compile_with_undeclared,
    "source = { type = \"dir\", path = \"world\" }",
    "source = { type = \"dir\", path = \"world\" }\nmaterialize = { prefix = \"/tmp/x\", rules = [\"guile\"], compile-with = \"guix\" }",
    "FILE:10:15: `packages.world.materialize`: compile-with names package 'guix', which is not declared"
);
case!(
    materialize_compile_with_cycle,
    "source = { type = \"dir\", path = \"world\" }",
    "source = { type = \"dir\", path = \"world\" }\nmaterialize = { prefix = \"/tmp/x\", rules = [\"guile\"], compile-with = \"runtime\" }",
    "FILE:13:8: `packages.runtime.from`: makes a cycle: world -> runtime -> world"
);
case!(
    materialize_relative_prefix,
    "source = { type = \"dir\", path = \"world\" }",
    "source = { type = \"dir\", path = \"world\" }\nmaterialize = { prefix = \"tmp/x\", rules = [\"guile\"] }",
    "FILE:10:15: `packages.world.materialize`: prefix 'tmp/x' is not an absolute path"
);
case!(
    port_out_of_range,
    "port = 22",
    "port = 70000",
    "FILE:20:8: `services.sshd.port`: 70000 is not a TCP port (1 to 65535)"
);
case!(
    bad_authorized_key,
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG8x test@host",
    "AAAAC3NzaC1lZDI1NTE5AAAAIG8x",
    "FILE:21:25: `services.sshd.root-authorized-keys`: not an OpenSSH public key ('TYPE BASE64 [COMMENT]')"
);
case!(
    unreadable_key_file,
    "root-authorized-keys = [",
    "root-authorized-keys-files = [\"missing.pub\"]\nroot-authorized-keys = [",
    "FILE:21:31: `services.sshd.root-authorized-keys-files`: cannot read DIR/missing.pub: No such file or directory (os error 2)"
);
case!(
    bad_group_name,
    "name = \"staff\"",
    "name = \"Staff\"",
    "FILE:24:8: `groups.name`: 'Staff' is not a group name (lower-case letters, digits, '_' and '-', starting with a letter or '_', at most 32)"
);
case!(
    group_clashes_with_base,
    "name = \"staff\"\ngid = 50",
    "name = \"users\"\ngid = 50",
    "FILE:24:8: `groups.name`: group 'users' is declared twice or is a base group"
);
case!(
    gid_taken,
    "gid = 50",
    "gid = 100",
    "FILE:25:7: `groups.gid`: 100 is already the gid of 'users'"
);
case!(
    user_in_undeclared_group,
    "group = \"staff\"",
    "group = \"wheel\"",
    "FILE:30:9: `users.group`: group 'wheel' is not declared"
);
case!(
    user_named_root,
    "name = \"alice\"",
    "name = \"root\"",
    "FILE:28:8: `users.name`: user 'root' is declared twice or is root"
);
case!(
    uid_zero,
    "uid = 1000",
    "uid = 0",
    "FILE:29:7: `users.uid`: 0 is outside 1 to 65533"
);
case!(
    relative_home,
    "home = \"/home/alice\"",
    "home = \"home/alice\"",
    "FILE:31:8: `users.home`: 'home/alice' is not an absolute path without '.' or '..'"
);
case!(
    relative_setuid_program,
    "base-packages = [\"runtime\"]",
    "base-packages = [\"runtime\"]\nsetuid-programs = [\"usr/bin/su\"]",
    "FILE:6:20: `setuid-programs`: 'usr/bin/su' is not an absolute path to a file of the runtime"
);
case!(
    setuid_programs_with_one_name,
    "base-packages = [\"runtime\"]",
    "base-packages = [\"runtime\"]\nsetuid-programs = [\"/usr/bin/su\", \"/bin/su\"]",
    "FILE:6:35: `setuid-programs`: two programs are named 'su'"
);
case!(
    unknown_verify_policy,
    "store-verify = \"metadata\"",
    "store-verify = \"paranoid\"",
    "FILE:34:16: unknown variant `paranoid`, expected one of `none`, `metadata`, `full`"
);
case!(
    boot_tries_zero,
    "store-verify = \"metadata\"",
    "store-verify = \"metadata\"\nboot-tries = 0",
    "FILE:35:14: `agent.boot-tries`: 0 is outside 1 to 9"
);
case!(
    boot_tries_ten,
    "store-verify = \"metadata\"",
    "store-verify = \"metadata\"\nboot-tries = 10",
    "FILE:35:14: `agent.boot-tries`: 10 is outside 1 to 9"
);
case!(
    boot_deadline_too_short,
    "store-verify = \"metadata\"",
    "store-verify = \"metadata\"\nboot-deadline = 29",
    "FILE:35:17: `agent.boot-deadline`: 29 is neither 0 (no watchdog) nor 30 to 65535 seconds"
);
case!(
    boot_deadline_too_long,
    "store-verify = \"metadata\"",
    "store-verify = \"metadata\"\nboot-deadline = 65536",
    "FILE:35:17: `agent.boot-deadline`: 65536 is neither 0 (no watchdog) nor 30 to 65535 seconds"
);
case!(
    on_failed_boot_unknown,
    "store-verify = \"metadata\"",
    "store-verify = \"metadata\"\non-failed-boot = \"later\"",
    "FILE:35:18: unknown variant `later`, expected `reboot` or `stay`"
);
case!(
    gate_names_unknown_check,
    "gate = [\"sshd\", \"smoke\"]",
    "gate = [\"sshd\", \"smok\"]",
    "FILE:35:17: `agent.gate`: 'smok' is neither a built-in check (sshd, shepherd, store, compat-shims, runtime-slice, activation) nor a declared probe or service"
);
case!(
    probe_without_program,
    "command = [\"true\"]",
    "command = []",
    "FILE:39:11: `agent.probes.command`: probe 'smoke' has no program"
);
case!(
    probe_timeout_zero,
    "command = [\"true\"]",
    "command = [\"true\"]\ntimeout = 0",
    "FILE:40:11: `agent.probes.timeout`: 0 is outside 1 to 3600 seconds"
);
case!(
    probe_named_like_a_builtin,
    "name = \"smoke\"",
    "name = \"sshd\"",
    "FILE:38:8: `agent.probes.name`: 'sshd' is declared twice or is a built-in check"
);
case!(
    bad_capacity,
    "capacity = \"2g\"",
    "capacity = \"2x\"",
    "FILE:42:12: `image.capacity`: '2x' has an unknown unit 'x' (use k, m, g or t)"
);
case!(
    root_larger_than_disk,
    "root-size = \"1g\"",
    "root-size = \"2g\"",
    "FILE:43:13: `image.root-size`: 2g does not fit in `image.capacity` 2g beside the 128m EFI system partition"
);
case!(
    unknown_format,
    "formats = [\"raw\", \"qcow2\"]",
    "formats = [\"raw\", \"vmdk\"]",
    "FILE:44:19: unknown variant `vmdk`, expected one of `raw`, `qcow2`, `vhd`"
);
case!(
    unknown_firmware,
    "firmware = \"direct\"",
    "firmware = \"bios\"",
    "FILE:45:12: unknown variant `bios`, expected `uefi` or `direct`"
);

// Strings that become fields of /etc/passwd, lines of authorized_keys or
// values in system.toml: no ':' where passwd separates fields, no control
// character anywhere (DEL too), keys and shells of the right form.
case!(
    comment_with_a_colon,
    "home = \"/home/alice\"",
    "home = \"/home/alice\"\ncomment = \"Alice:x:0:0\"",
    "FILE:32:11: `users.comment`: 'Alice:x:0:0' has a ':', which separates the fields of /etc/passwd"
);
case!(
    comment_with_a_newline,
    "home = \"/home/alice\"",
    "home = \"/home/alice\"\ncomment = \"Alice\\nmallory::0:0::/:/bin/sh\"",
    "FILE:32:11: `users.comment`: \"Alice\\nmallory::0:0::/:/bin/sh\" has a control character (U+000A)"
);
case!(
    comment_with_del,
    "home = \"/home/alice\"",
    "home = \"/home/alice\"\ncomment = \"Alice\\u007f\"",
    "FILE:32:11: `users.comment`: \"Alice\\u{7f}\" has a control character (U+007F)"
);
case!(
    shell_with_a_colon,
    "home = \"/home/alice\"",
    "home = \"/home/alice\"\nshell = \"/bin/sh:\"",
    "FILE:32:9: `users.shell`: '/bin/sh:' has a ':', which separates the fields of /etc/passwd"
);
case!(
    shell_with_a_newline,
    "home = \"/home/alice\"",
    "home = \"/home/alice\"\nshell = \"/bin/sh\\n\"",
    "FILE:32:9: `users.shell`: \"/bin/sh\\n\" has a control character (U+000A)"
);
case!(
    relative_shell,
    "home = \"/home/alice\"",
    "home = \"/home/alice\"\nshell = \"bash\"",
    "FILE:32:9: `users.shell`: 'bash' is not an absolute path without '..'"
);
case!(
    shell_with_dotdot,
    "home = \"/home/alice\"",
    "home = \"/home/alice\"\nshell = \"/bin/../tmp/sh\"",
    "FILE:32:9: `users.shell`: '/bin/../tmp/sh' is not an absolute path without '..'"
);
case!(
    home_is_root,
    "home = \"/home/alice\"",
    "home = \"/\"",
    "FILE:31:8: `users.home`: '/' is a system directory (a home goes under /home, /srv, /opt or a directory of /var such as /var/lib)"
);
case!(
    home_is_etc,
    "home = \"/home/alice\"",
    "home = \"//etc/\"",
    "FILE:31:8: `users.home`: '//etc/' is a system directory (a home goes under /home, /srv, /opt or a directory of /var such as /var/lib)"
);
case!(
    home_in_the_store,
    "home = \"/home/alice\"",
    "home = \"/frx/store\"",
    "FILE:31:8: `users.home`: '/frx/store' is a system directory (a home goes under /home, /srv, /opt or a directory of /var such as /var/lib)"
);
case!(
    home_is_the_homes_directory,
    "home = \"/home/alice\"",
    "home = \"/home\"",
    "FILE:31:8: `users.home`: '/home' is a system directory (a home goes under /home, /srv, /opt or a directory of /var such as /var/lib)"
);
case!(
    home_in_usr,
    "home = \"/home/alice\"",
    "home = \"/usr/share/alice\"",
    "FILE:31:8: `users.home`: '/usr/share/alice' is a system directory (a home goes under /home, /srv, /opt or a directory of /var such as /var/lib)"
);
case!(
    home_in_world_writable_tmp,
    "home = \"/home/alice\"",
    "home = \"/var/tmp/alice\"",
    "FILE:31:8: `users.home`: '/var/tmp/alice' is a system directory (a home goes under /home, /srv, /opt or a directory of /var such as /var/lib)"
);
case!(
    home_is_roots,
    "home = \"/home/alice\"",
    "home = \"/root\"",
    "FILE:31:8: `users.home`: '/root' is a system directory (a home goes under /home, /srv, /opt or a directory of /var such as /var/lib)"
);
case!(
    home_is_a_directory_of_var,
    "home = \"/home/alice\"",
    "home = \"/var/empty\"",
    "FILE:31:8: `users.home`: '/var/empty' is a system directory (a home goes under /home, /srv, /opt or a directory of /var such as /var/lib)"
);
case!(
    home_with_dotdot,
    "home = \"/home/alice\"",
    "home = \"/home/../etc\"",
    "FILE:31:8: `users.home`: '/home/../etc' is not an absolute path without '.' or '..'"
);
case!(
    home_with_a_colon,
    "home = \"/home/alice\"",
    "home = \"/home/alice:/bin/sh\"",
    "FILE:31:8: `users.home`: '/home/alice:/bin/sh' has a ':', which separates the fields of /etc/passwd"
);
case!(
    user_key_with_options,
    "home = \"/home/alice\"",
    "home = \"/home/alice\"\nauthorized-keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG8x a@b\", \"command=\\\"sh\\\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG8x\"]",
    "FILE:32:68: `users.authorized-keys`: not an OpenSSH public key ('TYPE BASE64 [COMMENT]')"
);
case!(
    user_key_with_a_second_line,
    "home = \"/home/alice\"",
    "home = \"/home/alice\"\nauthorized-keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG8x a@b\\nssh-rsa AAAAB3NzaC1yc2EAAAADAQAB m@x\"]",
    "FILE:32:20: `users.authorized-keys`: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG8x a@b\\nssh-rsa AAAAB3NzaC1yc2EAAAADAQAB m@x\" has a control character (U+000A)"
);
case!(
    user_key_of_unknown_type,
    "home = \"/home/alice\"",
    "home = \"/home/alice\"\nauthorized-keys = [\"ssh-dss AAAAB3NzaC1kc3MAAACBAP m@x\"]",
    "FILE:32:20: `users.authorized-keys`: not an OpenSSH public key ('TYPE BASE64 [COMMENT]')"
);
case!(
    root_key_with_a_second_line,
    "test@host\"]",
    "test@host\\rssh-rsa AAAAB3NzaC1yc2EAAAADAQAB m@x\"]",
    "FILE:21:25: `services.sshd.root-authorized-keys`: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG8x test@host\\rssh-rsa AAAAB3NzaC1yc2EAAAADAQAB m@x\" has a control character (U+000D)"
);
case!(
    key_file_with_a_line_that_is_not_a_key,
    "root-authorized-keys = [",
    "root-authorized-keys-files = [\"bad.pub\"]\nroot-authorized-keys = [",
    "FILE:21:31: `services.sshd.root-authorized-keys-files`: DIR/bad.pub line 4: not an OpenSSH public key ('TYPE BASE64 [COMMENT]')"
);
case!(
    mirror_with_a_space,
    "type = \"dir\", path = \"world\"",
    "type = \"debian\", suite = \"trixie\", packages = [\"bash\"], mirror = \"http://deb.debian.org/debian --include=evil\"",
    "FILE:9:10: `packages.world.source`: mirror \"http://deb.debian.org/debian --include=evil\" has a space or a control character"
);
case!(
    mirror_with_a_newline,
    "type = \"dir\", path = \"world\"",
    "type = \"debian\", suite = \"trixie\", packages = [\"bash\"], mirror = \"http://deb.debian.org/debian\\n\"",
    "FILE:9:10: `packages.world.source`: mirror \"http://deb.debian.org/debian\\n\" has a space or a control character"
);
case!(
    probe_environment_name_with_equals,
    "command = [\"true\"]",
    "command = [\"true\"]\nenvironment = { \"A=B\" = \"1\" }",
    "FILE:40:17: `agent.probes.environment`: 'A=B' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"
);
case!(
    probe_environment_name_starting_with_a_digit,
    "command = [\"true\"]",
    "command = [\"true\"]\nenvironment = { LANG = \"C\", 1X = \"1\" }",
    "FILE:40:29: `agent.probes.environment`: '1X' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"
);
case!(
    probe_environment_value_with_a_control_character,
    "command = [\"true\"]",
    "command = [\"true\"]\nenvironment = { TERM = \"\\u001b[2J\" }",
    "FILE:40:24: `agent.probes.environment`: \"\\u{1b}[2J\" has a control character (U+001B)"
);
case!(
    probe_argument_with_a_newline,
    "command = [\"true\"]",
    "command = [\"sh\", \"-c\", \"true\\nreboot\"]",
    "FILE:39:24: `agent.probes.command`: \"true\\nreboot\" has a control character (U+000A)"
);
case!(
    setuid_program_with_a_tab,
    "base-packages = [\"runtime\"]",
    "base-packages = [\"runtime\"]\nsetuid-programs = [\"/usr/bin/su\\t\"]",
    "FILE:6:20: `setuid-programs`: \"/usr/bin/su\\t\" has a control character (U+0009)"
);
case!(
    materialize_prefix_with_a_newline,
    "source = { type = \"dir\", path = \"world\" }",
    "source = { type = \"dir\", path = \"world\" }\nmaterialize = { prefix = \"/tmp/x\\nrules evil\", rules = [\"guile\"] }",
    "FILE:10:15: `packages.world.materialize`: \"/tmp/x\\nrules evil\" has a control character (U+000A)"
);
case!(
    source_path_with_a_newline,
    "path = \"world\" }",
    "path = \"world\\nkeep x\" }",
    "FILE:9:10: `packages.world.source`: \"world\\nkeep x\" has a control character (U+000A)"
);

/// The shipped examples are valid declarations once their inputs exist
/// (the staged prefixes and the demo key are made by the README's first
/// command; here they are stand-ins in a temporary directory).
#[test]
fn the_examples_are_valid() {
    for (example, mode) in [("pid1.toml", "shepherd-pid1"), ("rc.toml", "rc-shepherd")] {
        let t = tempfile::tempdir().unwrap();
        let text = fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples")
                .join(example),
        )
        .unwrap();
        let mut text = text.replace("../target/fruix-demo/id_ed25519.pub", "id.pub");
        for p in [
            "/tmp/guile-gnutls-freebsd-validate-install",
            "/tmp/shepherd-freebsd-validate-install",
        ] {
            let stand_in = t.path().join(p.trim_start_matches("/tmp/"));
            fs::create_dir_all(&stand_in).unwrap();
            text = text.replace(
                &format!("path = \"{p}\""),
                &format!("path = \"{}\"", stand_in.display()),
            );
        }
        fs::write(
            t.path().join("id.pub"),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyForTests x@y\n",
        )
        .unwrap();
        let l = parse(&t.path().join(example), &text).unwrap_or_else(|e| panic!("{example}: {e}"));
        assert_eq!(l.decl.init.as_str(), mode);
        // The world first: the slices are cut from it, and its Guile
        // compiles the materialized modules.
        let at = |name: &str| l.order.iter().position(|p| p == name).unwrap();
        assert_eq!(at("native-world"), 0, "{example}: {:?}", l.order);
        for after in ["native-runtime", "guile-extra", "shepherd"] {
            assert!(at("native-world") < at(after), "{example}: {:?}", l.order);
        }
    }
}

/// Declared services: each case puts one `[services.NAME]` table (from
/// line 23) before the groups.
macro_rules! service_case {
    ($name:ident, $table:expr, $want:expr) => {
        #[test]
        fn $name() {
            refused("[[groups]]", &format!("{}\n\n[[groups]]", $table), $want);
        }
    };
}

#[test]
fn a_declared_service_is_valid_and_can_be_gated() {
    let (_t, file) = workdir();
    let text = VALID
        .replace(
            "[[groups]]",
            "[services.web]\ncommand = [\"/usr/bin/busybox\", \"httpd\", \"-f\"]\nrequirement = [\"network\", \"sshd\"]\nuser = \"alice\"\ngroup = \"staff\"\nenvironment = { LANG = \"C.UTF-8\" }\nready = { http = \"http://127.0.0.1:8080/GPL-3\", timeout = 60 }\n\n[[groups]]",
        )
        .replace("gate = [\"sshd\", \"smoke\"]", "gate = [\"sshd\", \"smoke\", \"web\"]");
    let l = parse(&file, &text).unwrap();
    let web = l.decl.services.declared.values().next().unwrap();
    assert!(web.respawn);
    assert_eq!(*web.ready.as_ref().unwrap().get_ref().timeout.get_ref(), 60);
}

#[test]
fn the_boot_policy_takes_its_bounds_and_defaults() {
    let (_t, file) = workdir();
    let l = parse(&file, VALID).unwrap();
    assert_eq!(*l.decl.agent.boot_tries.get_ref(), 3);
    assert_eq!(*l.decl.agent.boot_deadline.get_ref(), 900);
    assert_eq!(
        l.decl.agent.on_failed_boot,
        declaration::OnFailedBoot::Reboot
    );
    for (tries, deadline, on) in [(1, 0, "stay"), (9, 30, "reboot"), (2, 65535, "stay")] {
        let text = VALID.replace(
            "store-verify = \"metadata\"",
            &format!(
                "store-verify = \"metadata\"\nboot-tries = {tries}\nboot-deadline = {deadline}\non-failed-boot = \"{on}\""
            ),
        );
        let l = parse(&file, &text).unwrap();
        assert_eq!(*l.decl.agent.boot_tries.get_ref(), tries);
        assert_eq!(*l.decl.agent.boot_deadline.get_ref(), deadline);
        let want = if on == "stay" {
            declaration::OnFailedBoot::Stay
        } else {
            declaration::OnFailedBoot::Reboot
        };
        assert_eq!(l.decl.agent.on_failed_boot, want);
    }
}

service_case!(
    service_unknown_field,
    "[services.web]\ncommand = [\"/bin/true\"]\nrespawns = false",
    "FILE:25:1: unknown field `respawns`, expected one of `command`, `requirement`, `user`, `group`, `environment`, `directory`, `respawn`, `log-file`, `ready`"
);
service_case!(
    service_bad_name,
    "[services.Web]\ncommand = [\"/bin/true\"]",
    "FILE:23:11: `services.Web`: 'Web' is not a service name (lower-case letters, digits and '-', starting with a letter)"
);
service_case!(
    service_reserved_name,
    "[services.network]\ncommand = [\"/bin/true\"]",
    "FILE:23:11: `services.network`: 'network' is reserved or the name of a built-in check or probe"
);
service_case!(
    service_probe_name,
    "[services.smoke]\ncommand = [\"/bin/true\"]",
    "FILE:23:11: `services.smoke`: 'smoke' is reserved or the name of a built-in check or probe"
);
service_case!(
    service_relative_command,
    "[services.web]\ncommand = [\"busybox\", \"httpd\"]",
    "FILE:24:12: `services.web.command`: 'busybox' is not an absolute path"
);
service_case!(
    service_empty_command,
    "[services.web]\ncommand = []",
    "FILE:24:11: `services.web.command`: has no program"
);
service_case!(
    service_unknown_requirement,
    "[services.web]\ncommand = [\"/bin/true\"]\nrequirement = [\"db\"]",
    "FILE:25:16: `services.web.requirement`: 'db' is neither network, sshd nor a declared service"
);
service_case!(
    service_cycle,
    "[services.a]\ncommand = [\"/bin/true\"]\nrequirement = [\"b\"]\n\n[services.b]\ncommand = [\"/bin/true\"]\nrequirement = [\"a\"]",
    "FILE:29:16: `services.b.requirement`: makes a cycle: a -> b -> a"
);
service_case!(
    service_bad_url,
    "[services.web]\ncommand = [\"/bin/true\"]\nready = { http = \"https://example.org/\" }",
    "FILE:25:18: `services.web.ready.http`: 'https://example.org/' is not an http URL of this machine (http://127.0.0.1:PORT/PATH or http://localhost:PORT/PATH)"
);
service_case!(
    service_two_ready_kinds,
    "[services.web]\ncommand = [\"/bin/true\"]\nready = { tcp = 8080, http = \"http://127.0.0.1:8080/\" }",
    "FILE:25:9: `services.web.ready`: give exactly one of tcp, http and command"
);
service_case!(
    service_bad_timeout,
    "[services.web]\ncommand = [\"/bin/true\"]\nready = { tcp = 8080, timeout = 0 }",
    "FILE:25:33: `services.web.ready.timeout`: 0 is outside 1 to 3600 seconds"
);
service_case!(
    service_unknown_user,
    "[services.web]\ncommand = [\"/bin/true\"]\nuser = \"bob\"",
    "FILE:25:8: `services.web.user`: 'bob' is neither root nor a declared user"
);
service_case!(
    service_relative_log_file,
    "[services.web]\ncommand = [\"/bin/true\"]\nlog-file = \"web.log\"",
    "FILE:25:12: `services.web.log-file`: 'web.log' is not an absolute path"
);
service_case!(
    service_control_character,
    "[services.web]\ncommand = [\"/bin/true\", \"a\\nb\"]",
    "FILE:24:25: `services.web.command`: \"a\\nb\" has a control character (U+000A)"
);
