//! A look at a plugin file's ELF headers before the dynamic loader maps it.
//!
//! Why: `dlopen` maps a library's segments straight from the file. A file cut short (a copy
//! still in progress, a full disk) maps fine, and the first touch of a page past its end is a
//! SIGBUS that kills the broker before it can log anything. The loader cannot be asked to
//! check, so this module does: the file must be an ELF shared object for this very platform
//! (class, byte order, machine, `ET_DYN`) and at least as long as its own headers say — the
//! program and section header tables, and every `PT_LOAD` segment's bytes in the file.
//!
//! It reads only the headers (a few hundred bytes), never the whole library, and trusts no
//! number in them: every offset and size is checked arithmetic, so a corrupt header is a
//! refusal, never a panic. Linux only; elsewhere the loader's own checks are all there is.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Why a file is not a loadable plugin library, before the loader is asked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not an ELF shared object for this platform; the text says what it is instead.
    NotSharedObject(String),
    /// The headers describe more bytes than the file has.
    Truncated {
        /// The least length the headers imply.
        needed: u64,
        /// The file's length.
        actual: u64,
    },
    /// The file could not be read (the I/O error's text).
    Unreadable(String),
}

fn unreadable(e: io::Error) -> Refusal {
    Refusal::Unreadable(e.to_string())
}

/// Checks the file at `path`; see the module documentation for what is checked.
pub(crate) fn check_file(path: &Path) -> Result<(), Refusal> {
    let file = File::open(path).map_err(unreadable)?;
    let len = file.metadata().map_err(unreadable)?.len();
    check(&file, len)
}

/// Random access to the bytes being checked: a file, or a slice in unit tests.
pub(crate) trait ReadAt {
    /// Fills `buf` from `offset`; the caller has already checked the range is in the file.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let bytes = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

const MAGIC: [u8; 4] = *b"\x7fELF";
const ET_DYN: u16 = 3;
const PT_LOAD: u32 = 1;
/// `e_phnum` value meaning "the real count is in section 0's `sh_info`".
const PN_XNUM: u16 = 0xffff;

/// `EI_CLASS` of this build: 2 for 64-bit, 1 for 32-bit.
const CLASS: u8 = if cfg!(target_pointer_width = "64") {
    2
} else {
    1
};
/// `EI_DATA` of this build: 1 little-endian, 2 big-endian.
const DATA: u8 = if cfg!(target_endian = "little") { 1 } else { 2 };

/// `e_machine` of this build's target, when it is one this module knows.
const MACHINE: Option<(u16, &str)> = if cfg!(target_arch = "x86_64") {
    Some((62, "x86-64"))
} else if cfg!(target_arch = "aarch64") {
    Some((183, "AArch64"))
} else if cfg!(target_arch = "x86") {
    Some((3, "x86"))
} else if cfg!(target_arch = "arm") {
    Some((40, "ARM"))
} else if cfg!(any(target_arch = "riscv64", target_arch = "riscv32")) {
    Some((243, "RISC-V"))
} else if cfg!(target_arch = "powerpc64") {
    Some((21, "PowerPC64"))
} else if cfg!(target_arch = "s390x") {
    Some((22, "s390x"))
} else if cfg!(target_arch = "loongarch64") {
    Some((258, "LoongArch"))
} else {
    None
};

/// Where each header field sits for this build's ELF class.
struct Layout {
    header: usize,
    phoff: usize,
    shoff: usize,
    phentsize: usize,
    phnum: usize,
    shentsize: usize,
    shnum: usize,
    /// Size of one program header, and where `p_offset` and `p_filesz` sit in it.
    ph: usize,
    p_offset: usize,
    p_filesz: usize,
    /// Size of one section header, and where `sh_size` and `sh_info` sit in it.
    sh: usize,
    sh_size: usize,
    sh_info: usize,
}

const LAYOUT: Layout = if CLASS == 2 {
    Layout {
        header: 64,
        phoff: 32,
        shoff: 40,
        phentsize: 54,
        phnum: 56,
        shentsize: 58,
        shnum: 60,
        ph: 56,
        p_offset: 8,
        p_filesz: 32,
        sh: 64,
        sh_size: 32,
        sh_info: 44,
    }
} else {
    Layout {
        header: 52,
        phoff: 28,
        shoff: 32,
        phentsize: 42,
        phnum: 44,
        shentsize: 46,
        shnum: 48,
        ph: 32,
        p_offset: 4,
        p_filesz: 16,
        sh: 40,
        sh_size: 20,
        sh_info: 28,
    }
};

/// Reads integers of this build's byte order and word size out of header bytes.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn u16(&self, at: usize) -> u16 {
        let b = [self.0[at], self.0[at + 1]];
        if DATA == 1 {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }
    }

    fn u32(&self, at: usize) -> u32 {
        let mut b = [0; 4];
        b.copy_from_slice(&self.0[at..at + 4]);
        if DATA == 1 {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    }

    /// An address-sized field (`Elf64_Off`/`Elf32_Off`, `xword`/`word` sizes).
    fn word(&self, at: usize) -> u64 {
        if CLASS == 1 {
            return u64::from(self.u32(at));
        }
        let mut b = [0; 8];
        b.copy_from_slice(&self.0[at..at + 8]);
        if DATA == 1 {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        }
    }
}

fn not_shared(reason: impl Into<String>) -> Refusal {
    Refusal::NotSharedObject(reason.into())
}

/// The end of a table of `count` entries of `size` bytes at `offset`; `None` on overflow.
fn table_end(offset: u64, count: u64, size: u64) -> Option<u64> {
    count.checked_mul(size)?.checked_add(offset)
}

/// Checks `len` bytes readable from `source`.
pub(crate) fn check<R: ReadAt + ?Sized>(source: &R, len: u64) -> Result<(), Refusal> {
    let l = &LAYOUT;
    let mut ident = [0u8; 16];
    if len < ident.len() as u64 {
        return Err(not_shared(format!(
            "it is {len} bytes long, too short for an ELF header"
        )));
    }
    source.read_exact_at(&mut ident, 0).map_err(unreadable)?;
    if ident[..4] != MAGIC {
        return Err(not_shared("it does not start with the ELF magic number"));
    }
    if ident[4] != CLASS {
        let bits = |c: u8| match c {
            1 => "32-bit".to_owned(),
            2 => "64-bit".to_owned(),
            other => format!("class {other}"),
        };
        return Err(not_shared(format!(
            "it is a {} ELF file; this broker is {}",
            bits(ident[4]),
            bits(CLASS)
        )));
    }
    if ident[5] != DATA {
        return Err(not_shared(
            "its byte order differs from this broker's platform",
        ));
    }
    if len < l.header as u64 {
        return Err(Refusal::Truncated {
            needed: l.header as u64,
            actual: len,
        });
    }
    let mut header = [0u8; 64];
    let header = &mut header[..l.header];
    source.read_exact_at(header, 0).map_err(unreadable)?;
    let h = Fields(header);
    let kind = h.u16(16);
    if kind != ET_DYN {
        let what = match kind {
            1 => "a relocatable object (ET_REL)".to_owned(),
            2 => "an executable (ET_EXEC)".to_owned(),
            4 => "a core dump (ET_CORE)".to_owned(),
            other => format!("of ELF type {other}"),
        };
        return Err(not_shared(format!(
            "it is {what}, not a shared object (ET_DYN)"
        )));
    }
    let machine = h.u16(18);
    if let Some((ours, name)) = MACHINE
        && machine != ours
    {
        return Err(not_shared(format!(
            "it is built for ELF machine {machine}; this broker runs on {name} ({ours})"
        )));
    }
    let (phoff, shoff) = (h.word(l.phoff), h.word(l.shoff));
    let (phentsize, shentsize) = (u64::from(h.u16(l.phentsize)), u64::from(h.u16(l.shentsize)));
    let (mut phnum, mut shnum) = (u64::from(h.u16(l.phnum)), u64::from(h.u16(l.shnum)));
    let overflow = || not_shared("its headers describe tables beyond any file size");
    let truncated = |needed: u64| {
        if needed > len {
            Err(Refusal::Truncated {
                needed,
                actual: len,
            })
        } else {
            Ok(())
        }
    };

    // Section headers. Counts too large for the header live in section 0 (extended numbering).
    if shoff != 0 {
        if shentsize < l.sh as u64 {
            return Err(not_shared(format!(
                "its section headers are {shentsize} bytes, expected at least {}",
                l.sh
            )));
        }
        truncated(table_end(shoff, 1, shentsize).ok_or_else(overflow)?)?;
        if shnum == 0 || phnum == u64::from(PN_XNUM) {
            let mut first = [0u8; 64];
            let first = &mut first[..l.sh];
            source.read_exact_at(first, shoff).map_err(unreadable)?;
            let s = Fields(first);
            if shnum == 0 {
                shnum = s.word(l.sh_size);
            }
            if phnum == u64::from(PN_XNUM) {
                phnum = u64::from(s.u32(l.sh_info));
            }
        }
        truncated(table_end(shoff, shnum, shentsize).ok_or_else(overflow)?)?;
    }

    // Program headers, then the file bytes of every loadable segment they describe.
    if phnum == 0 {
        return Ok(());
    }
    if phentsize < l.ph as u64 {
        return Err(not_shared(format!(
            "its program headers are {phentsize} bytes, expected at least {}",
            l.ph
        )));
    }
    truncated(table_end(phoff, phnum, phentsize).ok_or_else(overflow)?)?;
    let mut entry = [0u8; 56];
    let entry = &mut entry[..l.ph];
    let mut needed = 0u64;
    for i in 0..phnum {
        let at = table_end(phoff, i, phentsize).ok_or_else(overflow)?;
        source.read_exact_at(entry, at).map_err(unreadable)?;
        let p = Fields(entry);
        if p.u32(0) == PT_LOAD {
            let end = p
                .word(l.p_offset)
                .checked_add(p.word(l.p_filesz))
                .ok_or_else(overflow)?;
            needed = needed.max(end);
        }
    }
    truncated(needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal shared object of this platform: the header, one `PT_LOAD` segment covering
    /// `segment_end` bytes, and a section header table of two entries at the end.
    fn image(segment_end: u64) -> Vec<u8> {
        let l = &LAYOUT;
        let phoff = l.header as u64;
        let shoff = segment_end.max(phoff + l.ph as u64);
        let len = shoff + 2 * l.sh as u64;
        let mut v = vec![0u8; len as usize];
        v[..4].copy_from_slice(&MAGIC);
        v[4] = CLASS;
        v[5] = DATA;
        v[6] = 1;
        put16(&mut v, 16, ET_DYN);
        put16(&mut v, 18, MACHINE.map_or(0, |(m, _)| m));
        put_word(&mut v, l.phoff, phoff);
        put_word(&mut v, l.shoff, shoff);
        put16(&mut v, l.phentsize, l.ph as u16);
        put16(&mut v, l.phnum, 1);
        put16(&mut v, l.shentsize, l.sh as u16);
        put16(&mut v, l.shnum, 2);
        let ph = phoff as usize;
        put32(&mut v, ph, PT_LOAD);
        put_word(&mut v, ph + l.p_offset, 0);
        put_word(&mut v, ph + l.p_filesz, segment_end);
        v
    }

    fn put16(v: &mut [u8], at: usize, x: u16) {
        let b = if DATA == 1 {
            x.to_le_bytes()
        } else {
            x.to_be_bytes()
        };
        v[at..at + 2].copy_from_slice(&b);
    }

    fn put32(v: &mut [u8], at: usize, x: u32) {
        let b = if DATA == 1 {
            x.to_le_bytes()
        } else {
            x.to_be_bytes()
        };
        v[at..at + 4].copy_from_slice(&b);
    }

    fn put_word(v: &mut [u8], at: usize, x: u64) {
        if CLASS == 1 {
            put32(v, at, x as u32);
        } else {
            let b = if DATA == 1 {
                x.to_le_bytes()
            } else {
                x.to_be_bytes()
            };
            v[at..at + 8].copy_from_slice(&b);
        }
    }

    fn run(bytes: &[u8]) -> Result<(), Refusal> {
        check(bytes, bytes.len() as u64)
    }

    fn reason(bytes: &[u8]) -> String {
        match run(bytes) {
            Err(Refusal::NotSharedObject(reason)) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_complete_shared_object_passes() {
        assert_eq!(run(&image(4096)), Ok(()));
    }

    #[test]
    fn a_file_that_is_not_elf_is_refused() {
        assert_eq!(
            reason(b"not an ELF file, just text"),
            "it does not start with the ELF magic number"
        );
        assert!(reason(b"\x7fEL").contains("too short for an ELF header"));
    }

    #[test]
    fn a_file_cut_inside_its_section_headers_is_truncated() {
        let whole = image(4096);
        let cut = &whole[..whole.len() - 10];
        assert_eq!(
            run(cut),
            Err(Refusal::Truncated {
                needed: whole.len() as u64,
                actual: cut.len() as u64
            })
        );
    }

    #[test]
    fn a_file_cut_inside_a_loadable_segment_is_truncated() {
        let mut bytes = image(4096);
        // No section headers: only the segment says how long the file must be.
        put_word(&mut bytes, LAYOUT.shoff, 0);
        bytes.truncate(3000);
        assert_eq!(
            run(&bytes),
            Err(Refusal::Truncated {
                needed: 4096,
                actual: 3000
            })
        );
    }

    #[test]
    fn a_file_cut_inside_its_header_is_truncated() {
        let whole = image(4096);
        assert_eq!(
            run(&whole[..20]),
            Err(Refusal::Truncated {
                needed: LAYOUT.header as u64,
                actual: 20
            })
        );
    }

    #[test]
    fn another_class_type_or_machine_is_refused() {
        let mut other_class = image(4096);
        other_class[4] = 3 - CLASS;
        assert!(reason(&other_class).contains("ELF file; this broker is"));

        let mut executable = image(4096);
        put16(&mut executable, 16, 2);
        assert_eq!(
            reason(&executable),
            "it is an executable (ET_EXEC), not a shared object (ET_DYN)"
        );

        if let Some((ours, _)) = MACHINE {
            let mut foreign = image(4096);
            put16(&mut foreign, 18, ours + 1);
            assert!(reason(&foreign).contains(&format!("built for ELF machine {}", ours + 1)));
        }
    }

    #[test]
    fn impossible_sizes_are_refused_not_overflowed() {
        let mut bytes = image(4096);
        put_word(&mut bytes, LAYOUT.shoff, u64::MAX - 8);
        assert!(reason(&bytes).contains("beyond any file size"));

        let mut bytes = image(4096);
        let ph = LAYOUT.header;
        put_word(&mut bytes, ph + LAYOUT.p_offset, u64::MAX);
        put_word(&mut bytes, LAYOUT.shoff, 0);
        assert!(reason(&bytes).contains("beyond any file size"));
    }

    #[test]
    fn the_running_test_binary_passes_the_size_checks() {
        // A real file written by the toolchain: whatever its type, nothing is missing.
        let exe = std::env::current_exe().expect("the test binary has a path");
        match check_file(&exe) {
            Ok(()) | Err(Refusal::NotSharedObject(_)) => {}
            other => panic!("{}: {other:?}", exe.display()),
        }
    }
}
