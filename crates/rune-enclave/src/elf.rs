//! What the kernel and the dynamic loader will open for a program: `PT_INTERP`, `DT_NEEDED`,
//! `DT_RPATH` and `DT_RUNPATH`, read from the program headers (as `ld.so` reads them, so a
//! binary without section headers is handled too). Files are read on demand through
//! `object`'s `ReadCache`, never loaded whole: a hostile multi-gigabyte "program" costs a few
//! small reads.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use object::elf::{self, FileHeader32, FileHeader64};
use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use object::read::{ReadCache, ReadRef, StringTable};
use object::Endianness;

/// Limits on what is read from a file that may be hostile: `PATH_MAX`, and a dynamic section
/// of 65,536 entries (real ones have a few dozen).
const MAX_INTERP_BYTES: u64 = 4096;
const MAX_DYNAMIC_BYTES: u64 = 1 << 20;

/// At most this many `DT_NEEDED`, `DT_RPATH` or `DT_RUNPATH` entries are read from one file.
const MAX_DYNAMIC_STRINGS: usize = 4096;

/// What a file is, as far as starting it goes.
#[derive(Clone, Debug)]
pub enum Probe {
    Elf(ElfInfo),
    /// `#!` script: the interpreter path (the first word after `#!`).
    Script(String),
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfInfo {
    pub class64: bool,
    pub machine: u16,
    /// `ET_EXEC` or `ET_DYN` (anything else cannot be run or loaded).
    pub loadable: bool,
    pub interpreter: Option<String>,
    pub needed: Vec<String>,
    pub rpath: Vec<String>,
    pub runpath: Vec<String>,
}

impl ElfInfo {
    /// Whether the loader would accept `other` as a library for this object.
    pub fn compatible(&self, other: &ElfInfo) -> bool {
        self.class64 == other.class64 && self.machine == other.machine && other.loadable
    }

    /// Directories the loader searches after RPATH/RUNPATH (glibc's trusted directories on a
    /// Debian-style multiarch layout, plus `/usr/local/lib`, which musl and Debian's
    /// `ld.so.conf` both search).
    pub fn default_dirs(&self) -> &'static [&'static str] {
        match (self.machine, self.class64) {
            (m, true) if m == elf::EM_X86_64.0 => &[
                "/lib/x86_64-linux-gnu",
                "/usr/lib/x86_64-linux-gnu",
                "/lib64",
                "/lib",
                "/usr/lib",
                "/usr/local/lib",
            ],
            (m, true) if m == elf::EM_AARCH64.0 => &[
                "/lib/aarch64-linux-gnu",
                "/usr/lib/aarch64-linux-gnu",
                "/lib64",
                "/lib",
                "/usr/lib",
                "/usr/local/lib",
            ],
            (m, false) if m == elf::EM_386.0 => &[
                "/lib/i386-linux-gnu",
                "/usr/lib/i386-linux-gnu",
                "/lib32",
                "/usr/lib32",
                "/lib",
                "/usr/lib",
                "/usr/local/lib",
            ],
            (_, true) => &["/lib64", "/lib", "/usr/lib", "/usr/local/lib"],
            (_, false) => &["/lib", "/usr/lib", "/usr/local/lib"],
        }
    }
}

/// Looks at the start of `path` (a canonical host path to a regular file) and, for ELF,
/// reads what loading it involves.
pub fn probe(path: &Path) -> Result<Probe> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    if !file.metadata()?.is_file() {
        bail!("{}: not a regular file", path.display());
    }
    // The kernel reads at most 256 bytes for a `#!` line.
    let mut head = [0u8; 256];
    let mut len = 0;
    while len < head.len() {
        match file.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    let head = &head[..len];
    if head.starts_with(b"#!") {
        return Ok(match shebang(head) {
            Some(interpreter) => Probe::Script(interpreter),
            None => Probe::Other,
        });
    }
    if !head.starts_with(&elf::ELFMAG) || head.len() < 6 {
        return Ok(Probe::Other);
    }
    let cache = ReadCache::new(file);
    let info = match head[4] {
        c if c == elf::ELFCLASS64.0 => parse::<FileHeader64<Endianness>>(&cache),
        c if c == elf::ELFCLASS32.0 => parse::<FileHeader32<Endianness>>(&cache),
        _ => Err(anyhow!("unknown ELF class")),
    }
    .with_context(|| format!("{}: malformed ELF file", path.display()))?;
    Ok(Probe::Elf(info))
}

/// The interpreter of a `#!` line: the first word, if the line is complete.
fn shebang(head: &[u8]) -> Option<String> {
    let line = &head[2..];
    let end = line.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&line[..end]).ok()?;
    line.split([' ', '\t'])
        .find(|w| !w.is_empty())
        .map(str::to_string)
}

fn parse<Elf: FileHeader<Endian = Endianness>>(data: &ReadCache<File>) -> Result<ElfInfo> {
    let header = Elf::parse(data).map_err(|e| anyhow!("{e}"))?;
    let endian = header.endian().map_err(|e| anyhow!("{e}"))?;
    let e_type = header.e_type(endian);
    let phdrs = header
        .program_headers(endian, data)
        .map_err(|e| anyhow!("program headers: {e}"))?;

    let mut interpreter = None;
    let mut dynamic = None;
    for phdr in phdrs {
        // Bounded before anything is read: a (sparse) file may claim any size.
        let filesz: u64 = phdr.p_filesz(endian).into();
        let p_type = phdr.p_type(endian);
        if p_type == elf::PT_INTERP && filesz > MAX_INTERP_BYTES {
            bail!("PT_INTERP of {filesz} bytes is longer than a path can be");
        }
        if p_type == elf::PT_DYNAMIC && filesz > MAX_DYNAMIC_BYTES {
            bail!("PT_DYNAMIC of {filesz} bytes is implausibly large");
        }
        if let Some(interp) = phdr
            .interpreter(endian, data)
            .map_err(|e| anyhow!("PT_INTERP: {e}"))?
        {
            let interp =
                std::str::from_utf8(interp).map_err(|_| anyhow!("PT_INTERP is not UTF-8"))?;
            interpreter = Some(interp.to_string());
        }
        if let Some(entries) = phdr
            .dynamic(endian, data)
            .map_err(|e| anyhow!("PT_DYNAMIC: {e}"))?
        {
            dynamic = Some(entries);
        }
    }

    let mut info = ElfInfo {
        class64: header.is_class_64(),
        machine: header.e_machine(endian).0,
        loadable: e_type == elf::ET_EXEC || e_type == elf::ET_DYN,
        interpreter,
        needed: Vec::new(),
        rpath: Vec::new(),
        runpath: Vec::new(),
    };
    let Some(entries) = dynamic else {
        return Ok(info);
    };

    let (mut strtab, mut strsz) = (None, None);
    for entry in entries {
        let tag = entry.tag(endian);
        if tag == elf::DT_NULL {
            break;
        } else if tag == elf::DT_STRTAB {
            strtab = Some(entry.val(endian));
        } else if tag == elf::DT_STRSZ {
            strsz = Some(entry.val(endian));
        }
    }
    let (Some(strtab), Some(strsz)) = (strtab, strsz) else {
        return Ok(info);
    };
    // DT_STRTAB is an address: find the file offset through the PT_LOAD that maps it.
    let offset = phdrs
        .iter()
        .filter(|p| p.p_type(endian) == elf::PT_LOAD)
        .find_map(|p| {
            let vaddr: u64 = p.p_vaddr(endian).into();
            let filesz: u64 = p.p_filesz(endian).into();
            let offset: u64 = p.p_offset(endian).into();
            (strtab >= vaddr && strtab.checked_add(strsz)? <= vaddr.checked_add(filesz)?)
                .then(|| offset.checked_add(strtab - vaddr))
                .flatten()
        })
        .ok_or_else(|| anyhow!("DT_STRTAB is not inside a loaded segment"))?;
    let end = offset
        .checked_add(strsz)
        .ok_or_else(|| anyhow!("DT_STRSZ overflows"))?;
    let strings = StringTable::new(data, offset, end);

    let mut count = 0;
    for entry in entries {
        let tag = entry.tag(endian);
        if tag == elf::DT_NULL {
            break;
        }
        let list = if tag == elf::DT_NEEDED {
            &mut info.needed
        } else if tag == elf::DT_RPATH {
            &mut info.rpath
        } else if tag == elf::DT_RUNPATH {
            &mut info.runpath
        } else {
            continue;
        };
        count += 1;
        if count > MAX_DYNAMIC_STRINGS {
            bail!("more than {MAX_DYNAMIC_STRINGS} DT_NEEDED/DT_RPATH/DT_RUNPATH entries");
        }
        let value = string(&strings, entry.val(endian))?;
        list.push(value);
    }
    Ok(info)
}

fn string<'data, R: ReadRef<'data>>(
    strings: &StringTable<'data, R>,
    offset: u64,
) -> Result<String> {
    let offset = u32::try_from(offset).map_err(|_| anyhow!("string offset out of range"))?;
    let bytes = strings
        .get(offset)
        .map_err(|()| anyhow!("dynamic string at offset {offset} is outside DT_STRTAB"))?;
    let text = std::str::from_utf8(bytes).map_err(|_| anyhow!("dynamic string is not UTF-8"))?;
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_host_busybox_and_a_dynamic_program() {
        // busybox-static is a build dependency of the workspace; /bin/ls is in every Debian.
        let Probe::Elf(busybox) = probe(Path::new("/bin/busybox")).expect("busybox") else {
            panic!("busybox is not ELF");
        };
        assert!(busybox.loadable && busybox.interpreter.is_none() && busybox.needed.is_empty());

        let ls = std::fs::canonicalize("/bin/ls").expect("ls");
        let Probe::Elf(ls) = probe(&ls).expect("ls") else {
            panic!("ls is not ELF");
        };
        assert!(
            ls.interpreter.as_deref().is_some_and(|i| i.contains("ld-")),
            "{ls:?}"
        );
        assert!(ls.needed.iter().any(|n| n == "libc.so.6"), "{ls:?}");
        assert!(ls.compatible(&ls));
    }

    #[test]
    fn scripts_and_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("s");
        std::fs::write(&script, b"#!/bin/sh -e\necho\n").expect("write");
        assert!(matches!(probe(&script).expect("probe"), Probe::Script(i) if i == "/bin/sh"));
        let junk = dir.path().join("j");
        std::fs::write(&junk, b"\x7fELF\x02\x01\x01garbage").expect("write");
        assert!(probe(&junk).is_err());
        // A program header claiming a 1 TiB PT_DYNAMIC in a sparse file: refused unread.
        let mut elf = std::fs::read("/bin/busybox").expect("busybox");
        let phoff = u64::from_le_bytes(elf[32..40].try_into().expect("8 bytes")) as usize;
        elf[phoff..phoff + 4].copy_from_slice(&2u32.to_le_bytes()); // PT_DYNAMIC
        elf[phoff + 32..phoff + 40].copy_from_slice(&(1u64 << 40).to_le_bytes()); // p_filesz
        let sparse = dir.path().join("sparse");
        std::fs::write(&sparse, &elf).expect("write");
        std::fs::File::options()
            .write(true)
            .open(&sparse)
            .and_then(|f| f.set_len(2 << 40))
            .expect("sparse");
        let err = probe(&sparse).expect_err("huge PT_DYNAMIC");
        assert!(format!("{err:#}").contains("implausibly large"), "{err:#}");
        std::fs::write(&junk, b"text").expect("write");
        assert!(matches!(probe(&junk).expect("probe"), Probe::Other));
    }
}
