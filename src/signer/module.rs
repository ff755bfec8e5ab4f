//! What the controller, the injector and Envoy share with the signer module (`module/`): its
//! names, its filter configuration, and the Envoy ABI it is built for.
//!
//! Envoy 1.40 only warns when a module names another ABI version, and a callback whose
//! arguments changed would then misbehave at request time. So the module checks its host
//! before anything runs ([`check`]): every Envoy release adds or changes callbacks, and the set
//! of `envoy_dynamic_module_callback_*` functions the binary exports (read from its ELF dynamic
//! symbol table) must be exactly the set Envoy 1.40.0 exports. An older Envoy lacks callbacks
//! the module calls and refuses it earlier, at `dlopen`, naming the missing symbol.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{AlgorithmParseError, Overrides};

/// The module's name in `DynamicModuleConfig`; Envoy loads [`FILE`].
pub const NAME: &str = "lattice_xds_signer";
/// The file Envoy loads from `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
pub const FILE: &str = "liblattice_xds_signer.so";
/// The one filter the module has (`DynamicModuleFilter.filter_name`).
pub const FILTER: &str = "sigv4";

/// The Envoy release whose ABI the module is written against: the chart's and the tests'.
pub const ENVOY_VERSION: &str = "1.40";

/// The filter's configuration, as JSON: what the controller chooses within the scope the
/// module reads from Envoy's environment. Unknown fields are refused, so a typo cannot go
/// unnoticed.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_set: Option<String>,
}

impl Settings {
    /// What a request is signed for; an unknown algorithm is an error.
    pub fn overrides(self) -> Result<Overrides, AlgorithmParseError> {
        Ok(Overrides {
            algorithm: self.algorithm.as_deref().map(str::parse).transpose()?,
            region: self.region,
            service: self.service,
            region_set: self.region_set,
        })
    }
}

/// SHA-256 of the sorted names of Envoy 1.40.0's exported callbacks, each followed by `\n`:
/// `nm -D --defined-only envoy | awk '{print $3}' | grep '^envoy_dynamic_module_callback_' |
/// LC_ALL=C sort | sha256sum`.
const CALLBACKS_SHA256: &str = "45522a9a8914fa17b3753193c505aa8f28f0fc1553a9bfe23d16d2d8dc17180e";
const CALLBACKS: usize = 781;
const PREFIX: &[u8] = b"envoy_dynamic_module_callback_";

/// Checks the Envoy binary at `path` (the module checks `/proc/self/exe`); the error says what
/// differs and what to do.
pub fn check(path: &Path) -> Result<(), String> {
    let names = exported_callbacks(path).map_err(|error| {
        format!(
            "cannot read the exported callbacks of {}: {error}",
            path.display()
        )
    })?;
    let digest = fingerprint(&names);
    if digest == CALLBACKS_SHA256 {
        return Ok(());
    }
    Err(format!(
        "this Envoy's dynamic-module ABI is not Envoy {ENVOY_VERSION}'s, which this module was \
         built for ({} callbacks exported where Envoy {ENVOY_VERSION}.0 exports {CALLBACKS}; \
         fingerprint {digest}): run Envoy {ENVOY_VERSION}, or a lattice-xds release built for \
         this Envoy",
        names.len()
    ))
}

fn fingerprint(names: &[Vec<u8>]) -> String {
    let mut hash = Sha256::new();
    for name in names {
        hash.update(name);
        hash.update(b"\n");
    }
    hex::encode(hash.finalize())
}

/// The sorted names of the defined dynamic symbols that start with [`PREFIX`], read from the
/// section headers of an ELF64 little-endian file. Only the headers and the dynamic symbol and
/// string tables are read (about 100 KB of Envoy's 150 MB), since it runs at every Envoy start.
fn exported_callbacks(path: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    const SHT_DYNSYM: u32 = 11;
    const SYMBOL_SIZE: usize = 24;
    let file = File::open(path)?;
    let header = read(&file, 0, 64)?;
    if header[..4] != *b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return Err(invalid("not a 64-bit little-endian ELF file"));
    }
    let section_table = u64_at(&header, 0x28);
    let section_size = u16_at(&header, 0x3a) as usize;
    let sections = u16_at(&header, 0x3c) as u64;
    let table = read(&file, section_table, section_size * sections as usize)?;
    let section = |index: usize| &table[index * section_size..(index + 1) * section_size];
    let dynsym = (0..sections as usize)
        .map(section)
        .find(|section| u32_at(section, 4) == SHT_DYNSYM)
        .ok_or_else(|| invalid("no dynamic symbol table"))?;
    let strings = section(u32_at(dynsym, 0x28) as usize);
    let strings = read(&file, u64_at(strings, 0x18), u64_at(strings, 0x20) as usize)?;
    let symbols = read(&file, u64_at(dynsym, 0x18), u64_at(dynsym, 0x20) as usize)?;
    let mut names: Vec<Vec<u8>> = symbols
        .chunks_exact(SYMBOL_SIZE)
        .filter(|symbol| u16_at(symbol, 6) != 0)
        .filter_map(|symbol| {
            let start = u32_at(symbol, 0) as usize;
            let name = strings.get(start..)?;
            let end = name.iter().position(|byte| *byte == 0)?;
            Some(&name[..end])
        })
        .filter(|name| name.starts_with(PREFIX))
        .map(<[u8]>::to_vec)
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

fn read(file: &File, offset: u64, length: usize) -> std::io::Result<Vec<u8>> {
    let mut bytes = vec![0; length];
    file.read_exact_at(&mut bytes, offset)?;
    Ok(bytes)
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default())
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default())
}
