//! Loading exchange-type libraries from disk and checking what they claim to be.
//!
//! A library is opened with libloading and then leaked: exchange-type vtables and every
//! exchange created from them must stay valid for the life of the process, and unloading code
//! that may still be on another thread's stack is not a risk worth a feature. Every check a
//! header fails produces a [`LoadError`] whose text says which library, what was expected and
//! what was found; the broker logs it and starts without that library.
//!
//! On Linux the file's ELF headers are checked before the dynamic loader sees it
//! (`exchange::elf`): a truncated library would otherwise map without complaint and kill the
//! process with SIGBUS on first use, before anything could be logged.

use std::path::{Path, PathBuf};
use warren_plugin_api::abi::{
    ABI_MAJOR, ABI_MINOR, ENTRY_SYMBOL, ENTRY_SYMBOL_PREFIX, EntryFn, ExchangeTypeVTable,
    LAYOUT_HASH, MAGIC, PluginHeader,
};

/// Why a library (or one of its types) was not registered.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The dynamic loader refused the file.
    #[error("cannot load plugin library {path}: {reason}")]
    Open {
        /// The library file.
        path: PathBuf,
        /// The loader's explanation.
        reason: String,
    },
    /// The file is not a shared library of this platform (checked before it is opened).
    #[error("plugin library {path} is not a shared library for this platform: {reason}")]
    NotSharedObject {
        /// The library file.
        path: PathBuf,
        /// What it is instead.
        reason: String,
    },
    /// The file is shorter than its own headers say: a copy cut short.
    #[error(
        "plugin library {path} is truncated: headers say at least {needed} bytes, file has {actual}; was it copied completely?"
    )]
    Truncated {
        /// The library file.
        path: PathBuf,
        /// The least length its headers imply.
        needed: u64,
        /// Its length.
        actual: u64,
    },
    /// The library exports an entry symbol for another ABI major.
    #[error(
        "plugin library {path} was built for exchange-type ABI major {found} (it exports {ENTRY_SYMBOL_PREFIX}{found}); this broker speaks major {ABI_MAJOR}: rebuild it against warren-plugin-api {ABI_MAJOR}.x"
    )]
    WrongMajor {
        /// The library file.
        path: PathBuf,
        /// The major the library was built for.
        found: u32,
    },
    /// No entry symbol at all: not a Warren plugin.
    #[error(
        "plugin library {path} exports no {ENTRY_SYMBOL_PREFIX}{ABI_MAJOR} symbol: it is not a Warren exchange-type plugin (was it built with the crate's `dylib` feature?)"
    )]
    MissingEntry {
        /// The library file.
        path: PathBuf,
    },
    /// The header is not what the ABI says it must be.
    #[error("plugin library {path} has an invalid header: {reason}")]
    BadHeader {
        /// The library file.
        path: PathBuf,
        /// Which check failed, with expected and found values.
        reason: String,
    },
    /// The type's name is already registered by another plugin or built-in.
    #[error(
        "exchange type '{name}' from {origin} is already provided by {owner}; the library is skipped"
    )]
    NameTaken {
        /// The contested name.
        name: String,
        /// The library that tried to claim it.
        origin: String,
        /// Who has it.
        owner: String,
    },
    /// The type's name is reserved for a type the broker implements itself.
    #[error(
        "exchange type '{name}' from {origin} uses a name reserved by the broker; the library is skipped"
    )]
    NameReserved {
        /// The reserved name.
        name: String,
        /// The library that tried to claim it.
        origin: String,
    },
}

/// A library's header and vtables, checked and ready to register.
pub(crate) struct CheckedHeader {
    pub plugin_name: String,
    pub plugin_version: String,
    /// (type name, description, vtable) per type.
    pub types: Vec<(String, String, &'static ExchangeTypeVTable)>,
}

/// Majors probed when the expected entry symbol is missing, to tell "wrong version" from
/// "not a plugin".
const PROBED_MAJORS: std::ops::RangeInclusive<u32> = 0..=32;

/// Most types one library may declare; a larger count means a corrupt header.
const MAX_TYPES_PER_LIBRARY: usize = 256;

/// Opens `path`, finds the entry symbol and checks the header it returns.
pub(crate) fn load_library(path: &Path) -> Result<CheckedHeader, LoadError> {
    // Logged first: if loading brings the process down, this is the line that says why.
    tracing::info!(path = %path.display(), "loading exchange-type plugin library");
    #[cfg(target_os = "linux")]
    check_file(path)?;
    // SAFETY: loading a library runs its initialisers; the operator put it in the plugins
    // directory, which is the trust boundary for native plugins.
    let library = unsafe { libloading::Library::new(path) }.map_err(|e| LoadError::Open {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    // Never unloaded: vtables and plugin state must outlive every exchange made from them.
    let library: &'static libloading::Library = Box::leak(Box::new(library));

    // SAFETY: the symbol, if present, has the ABI's entry signature (it is named for it).
    let entry = match unsafe { library.get::<EntryFn>(ENTRY_SYMBOL) } {
        Ok(entry) => *entry,
        Err(_) => return Err(missing_entry(library, path)),
    };
    // SAFETY: calling the entry function is the ABI's contract; it returns a static header.
    let header = unsafe { entry() };
    // SAFETY: a non-null header pointer points at a static `PluginHeader` (checked below
    // field by field before anything else is trusted).
    let header: &'static PluginHeader = unsafe { header.as_ref() }
        .ok_or_else(|| bad_header(path, "the entry symbol returned a null header".into()))?;
    check_header(header, path)
}

/// Refuses a file the dynamic loader must not be given (see `exchange::elf`).
#[cfg(target_os = "linux")]
fn check_file(path: &Path) -> Result<(), LoadError> {
    use super::elf::{self, Refusal};
    elf::check_file(path).map_err(|refusal| match refusal {
        Refusal::NotSharedObject(reason) => LoadError::NotSharedObject {
            path: path.to_owned(),
            reason,
        },
        Refusal::Truncated { needed, actual } => LoadError::Truncated {
            path: path.to_owned(),
            needed,
            actual,
        },
        Refusal::Unreadable(reason) => LoadError::Open {
            path: path.to_owned(),
            reason: format!("cannot read it: {reason}"),
        },
    })
}

fn missing_entry(library: &libloading::Library, path: &Path) -> LoadError {
    for major in PROBED_MAJORS.filter(|&m| m != ABI_MAJOR) {
        let symbol = format!("{ENTRY_SYMBOL_PREFIX}{major}\0");
        // SAFETY: only the symbol's presence is checked; it is never called.
        if unsafe { library.get::<*const ()>(symbol.as_bytes()) }.is_ok() {
            return LoadError::WrongMajor {
                path: path.to_owned(),
                found: major,
            };
        }
    }
    LoadError::MissingEntry {
        path: path.to_owned(),
    }
}

fn bad_header(path: &Path, reason: String) -> LoadError {
    LoadError::BadHeader {
        path: path.to_owned(),
        reason,
    }
}

/// Checks a header field by field, in the order that makes each later read safe.
pub(crate) fn check_header(
    header: &'static PluginHeader,
    path: &Path,
) -> Result<CheckedHeader, LoadError> {
    if header.magic != MAGIC {
        return Err(bad_header(
            path,
            format!("magic is {:?}, expected {:?}", header.magic, MAGIC),
        ));
    }
    if header.abi_major != ABI_MAJOR {
        return Err(LoadError::WrongMajor {
            path: path.to_owned(),
            found: header.abi_major,
        });
    }
    if header.abi_minor > ABI_MINOR {
        return Err(bad_header(
            path,
            format!(
                "it needs ABI {}.{} but this broker provides {ABI_MAJOR}.{ABI_MINOR}; upgrade the broker",
                header.abi_major, header.abi_minor
            ),
        ));
    }
    if header.layout_hash != LAYOUT_HASH {
        return Err(bad_header(
            path,
            format!(
                "struct layout hash {:#018x} differs from the broker's {LAYOUT_HASH:#018x}: it was built against an incompatible copy of warren-plugin-api",
                header.layout_hash
            ),
        ));
    }
    let count = header.exchange_type_count;
    if count > MAX_TYPES_PER_LIBRARY || (count > 0 && header.exchange_types.is_null()) {
        return Err(bad_header(
            path,
            format!(
                "it declares {count} exchange types at {:p}",
                header.exchange_types
            ),
        ));
    }
    // SAFETY: the layout matches ours, so these views are as the ABI describes: static bytes.
    let (plugin_name, plugin_version) = unsafe {
        (
            header.plugin_name.as_slice(),
            header.plugin_version.as_slice(),
        )
    };
    let plugin_name = String::from_utf8_lossy(plugin_name).into_owned();
    let plugin_version = String::from_utf8_lossy(plugin_version).into_owned();
    let vtables: &'static [ExchangeTypeVTable] = if count == 0 {
        &[]
    } else {
        // SAFETY: non-null and `count` entries long (ABI contract), static.
        unsafe { std::slice::from_raw_parts(header.exchange_types, count) }
    };
    let mut types = Vec::with_capacity(count);
    for vtable in vtables {
        // SAFETY: as above, static bytes.
        let (name, description) =
            unsafe { (vtable.name.as_slice(), vtable.description.as_slice()) };
        let name = match std::str::from_utf8(name) {
            Ok(n) if !n.is_empty() && n.len() <= 255 => n.to_owned(),
            _ => {
                return Err(bad_header(
                    path,
                    format!("exchange type name {name:?} is not 1 to 255 bytes of UTF-8"),
                ));
            }
        };
        types.push((
            name,
            String::from_utf8_lossy(description).into_owned(),
            vtable,
        ));
    }
    Ok(CheckedHeader {
        plugin_name,
        plugin_version,
        types,
    })
}
