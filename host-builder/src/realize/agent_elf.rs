//! The agent binary's ELF header checked against the declared system
//! before it goes into an image: a Linux `fruix-agent` in a FreeBSD
//! system, a 32-bit or an aarch64 one in an x86-64 guest would not start,
//! and would only show it at the guest's first boot. The deeper checks of
//! a FreeBSD link (interpreter, NEEDED, symbol versions) are
//! `scripts/check-freebsd-elf`'s, run on every build of it in the tests.

use std::fs;
use std::io::Read as _;
use std::path::Path;

use crate::declaration::Os;
use crate::error::BuildError;

/// What an ELF header says of the system it was built for.
#[derive(Debug, PartialEq, Eq)]
struct Header {
    class: u8,
    os_abi: u8,
    machine: u16,
}

/// `EI_CLASS` of a 64-bit file.
const ELFCLASS64: u8 = 2;
/// `e_machine` of x86-64, the only machine the guests have.
const EM_X86_64: u16 = 62;

/// Reads the header fields of an ELF file's first bytes; `None` when they
/// are not ELF (a script is taken as it is).
fn header(head: &[u8]) -> Option<Header> {
    if head.len() < 4 || &head[..4] != b"\x7fELF" {
        return None;
    }
    if head.len() < 20 {
        // ELF, but cut before its machine: never an agent. A class of 0
        // makes `refusal` say so.
        return Some(Header {
            class: 0,
            os_abi: 0,
            machine: 0,
        });
    }
    // e_machine is in the file's byte order (EI_DATA: 1 little, 2 big).
    let m = [head[18], head[19]];
    let machine = if head[5] == 2 {
        u16::from_be_bytes(m)
    } else {
        u16::from_le_bytes(m)
    };
    Some(Header {
        class: head[4],
        os_abi: head[7],
        machine,
    })
}

/// The name of an `e_machine` value, for the message.
fn machine_name(m: u16) -> String {
    match m {
        3 => "i386".into(),
        40 => "arm".into(),
        62 => "x86-64".into(),
        183 => "aarch64".into(),
        243 => "riscv".into(),
        other => format!("machine {other}"),
    }
}

/// Why the header `h` of `binary` does not fit a guest of `os`, if it
/// does not.
fn refusal(binary: &Path, h: &Header, os: Os) -> Option<String> {
    let at = binary.display();
    if h.class != ELFCLASS64 {
        return Some(match h.class {
            1 => format!("{at}: the agent is a 32-bit ELF file, the guest is 64-bit x86-64"),
            0 => format!("{at}: the agent is a truncated ELF file or of ELF class 0"),
            other => format!("{at}: the agent is an ELF file of unknown class {other}"),
        });
    }
    if h.machine != EM_X86_64 {
        return Some(format!(
            "{at}: the agent is built for {}, the guest is x86-64",
            machine_name(h.machine)
        ));
    }
    // EI_OSABI: 0 (System V) and 3 (GNU) are what Linux linkers write;
    // FreeBSD's, and scripts/build-freebsd-agent's branding, write 9.
    let built_for = match h.os_abi {
        0 | 3 => Os::Linux,
        9 => Os::Freebsd,
        other => {
            return Some(format!(
                "{at}: the agent is an ELF file for OS/ABI {other}, neither Linux nor FreeBSD"
            ));
        }
    };
    (built_for != os).then(|| {
        format!(
            "{at}: the agent is built for {}, the declaration's os is {}: pass --agent with a fruix-agent built for {}",
            built_for.as_str(),
            os.as_str(),
            os.as_str()
        )
    })
}

/// Refuses an agent ELF built for another system, word size or machine
/// than the declared guest's (see the module doc).
pub(super) fn check(binary: &Path, os: Os) -> Result<(), BuildError> {
    let mut head = [0u8; 20];
    let mut n = 0;
    let mut f = fs::File::open(binary).map_err(|e| BuildError::Io(binary.to_owned(), e))?;
    // read() may return less than asked of a file: read until full or end.
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(BuildError::Io(binary.to_owned(), e)),
        }
    }
    match header(&head[..n]) {
        Some(h) => refusal(binary, &h, os).map_or(Ok(()), |m| Err(BuildError::Input(m))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF header's first 20 bytes: class, data, OS/ABI, machine.
    fn elf(class: u8, data: u8, os_abi: u8, machine: u16) -> Vec<u8> {
        let mut b = vec![0u8; 20];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = class;
        b[5] = data;
        b[6] = 1;
        b[7] = os_abi;
        let m = if data == 2 {
            machine.to_be_bytes()
        } else {
            machine.to_le_bytes()
        };
        b[18..20].copy_from_slice(&m);
        b
    }

    fn why(head: &[u8], os: Os) -> Option<String> {
        refusal(Path::new("/a"), &header(head).unwrap(), os)
    }

    #[test]
    fn an_x86_64_agent_of_the_declared_os_is_taken() {
        assert_eq!(why(&elf(2, 1, 9, 62), Os::Freebsd), None);
        assert_eq!(why(&elf(2, 1, 0, 62), Os::Linux), None);
        assert_eq!(why(&elf(2, 1, 3, 62), Os::Linux), None);
        assert_eq!(header(b"#!/bin/sh\necho agent here\n"), None, "a script");
        assert_eq!(
            why(&elf(2, 1, 9, 62)[..19], Os::Freebsd).unwrap(),
            "/a: the agent is a truncated ELF file or of ELF class 0"
        );
        assert_eq!(
            why(&elf(7, 1, 9, 62), Os::Freebsd).unwrap(),
            "/a: the agent is an ELF file of unknown class 7"
        );
    }

    #[test]
    fn another_class_machine_or_os_is_refused_by_name() {
        assert_eq!(
            why(&elf(2, 1, 9, 183), Os::Freebsd).unwrap(),
            "/a: the agent is built for aarch64, the guest is x86-64"
        );
        assert_eq!(
            why(&elf(1, 1, 9, 3), Os::Freebsd).unwrap(),
            "/a: the agent is a 32-bit ELF file, the guest is 64-bit x86-64"
        );
        assert_eq!(
            why(&elf(2, 2, 0, 62), Os::Linux),
            None,
            "a big-endian header is read in its own order"
        );
        assert_eq!(
            why(&elf(2, 2, 0, 21), Os::Linux).unwrap(),
            "/a: the agent is built for machine 21, the guest is x86-64"
        );
        assert_eq!(
            why(&elf(2, 1, 0, 62), Os::Freebsd).unwrap(),
            "/a: the agent is built for linux, the declaration's os is freebsd: pass --agent with a fruix-agent built for freebsd"
        );
        assert_eq!(
            why(&elf(2, 1, 6, 62), Os::Freebsd).unwrap(),
            "/a: the agent is an ELF file for OS/ABI 6, neither Linux nor FreeBSD"
        );
    }
}
