//! The one registry of exchange types: built-ins first, then every library in the plugins
//! directory. The server asks it which types exist; everything else goes through the
//! [`ExchangeType`] it hands out.

use super::exchange_type::{ExchangeType, Origin};
use super::loader::{self, CheckedHeader, LoadError};
use rustc_hash::FxHashMap;
use std::path::Path;
use std::sync::Arc;
use warren_plugin_api::abi::PluginHeader;

/// How a linked-in plugin crate hands over its header (`warren_plugin_header`).
type HeaderFn = fn() -> &'static PluginHeader;

/// Names the broker implements itself (in `core`), which no plugin may claim.
pub const RESERVED_TYPE_NAMES: &[&str] = &["x-delayed-message"];

/// Exchange types by name.
#[derive(Clone, Debug, Default)]
pub struct ExchangeTypeRegistry {
    types: FxHashMap<String, ExchangeType>,
}

impl ExchangeTypeRegistry {
    /// An empty registry (tests use it to load only libraries).
    pub fn empty() -> Self {
        Self::default()
    }

    /// The registry with direct, fanout, topic and headers, registered through the same
    /// vtables their shared-library builds export.
    pub fn with_builtins() -> Self {
        let mut registry = Self::empty();
        let builtins: [(&'static str, HeaderFn); 4] = [
            ("warren-direct", warren_plugin_direct::warren_plugin_header),
            ("warren-fanout", warren_plugin_fanout::warren_plugin_header),
            ("warren-topic", warren_plugin_topic::warren_plugin_header),
            (
                "warren-headers",
                warren_plugin_headers::warren_plugin_header,
            ),
        ];
        for (plugin, header) in builtins {
            let registered =
                registry.register_header(header(), Origin::BuiltIn { plugin }, Path::new(plugin));
            if let Err(e) = registered {
                // The built-ins are compiled with this very ABI; failing here is a build bug.
                panic!("built-in exchange type plugin {plugin} refused: {e}");
            }
        }
        registry
    }

    /// Registers the types of a header that was linked in or returned by a library.
    /// All or nothing: a library with one bad type registers none.
    pub fn register_header(
        &mut self,
        header: &'static PluginHeader,
        origin: Origin,
        path: &Path,
    ) -> Result<Vec<String>, LoadError> {
        let checked = loader::check_header(header, path)?;
        self.register_checked(checked, origin)
    }

    fn register_checked(
        &mut self,
        checked: CheckedHeader,
        origin: Origin,
    ) -> Result<Vec<String>, LoadError> {
        for (name, _, _) in &checked.types {
            if RESERVED_TYPE_NAMES.contains(&name.as_str()) {
                return Err(LoadError::NameReserved {
                    name: name.clone(),
                    origin: origin.to_string(),
                });
            }
            let taken_by = self
                .types
                .get(name)
                .map(|t| t.origin().to_string())
                .or_else(|| {
                    let twice = checked.types.iter().filter(|(n, _, _)| n == name).count() > 1;
                    twice.then(|| origin.to_string())
                });
            if let Some(owner) = taken_by {
                return Err(LoadError::NameTaken {
                    name: name.clone(),
                    origin: origin.to_string(),
                    owner,
                });
            }
        }
        let names: Vec<String> = checked.types.iter().map(|(n, _, _)| n.clone()).collect();
        for (name, description, vtable) in checked.types {
            self.types.insert(
                name.clone(),
                ExchangeType::new(vtable, name, description, origin.clone()),
            );
        }
        Ok(names)
    }

    /// Loads one library and registers its types.
    pub fn load_library(&mut self, path: &Path) -> Result<Vec<String>, LoadError> {
        let checked = loader::load_library(path)?;
        let origin = Origin::Library {
            path: Arc::new(path.to_owned()),
            plugin: checked.plugin_name.clone(),
        };
        let version = checked.plugin_version.clone();
        let names = self.register_checked(checked, origin.clone())?;
        tracing::info!(%origin, version, types = ?names, "loaded exchange-type plugin");
        Ok(names)
    }

    /// Loads every shared library (`.so`, `.dylib`, `.dll`) in `dir`, in file-name order so
    /// that which of two conflicting libraries wins does not depend on the file system.
    /// Failures are logged and returned; the broker starts without those libraries.
    pub fn load_dir(&mut self, dir: &Path) -> Vec<LoadError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "cannot read plugins directory: {e}");
                return Vec::new();
            }
        };
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .is_some_and(|x| x == "so" || x == "dylib" || x == "dll")
            })
            .collect();
        paths.sort();
        let mut errors = Vec::new();
        for path in paths {
            if let Err(e) = self.load_library(&path) {
                tracing::error!("{e}");
                errors.push(e);
            }
        }
        errors
    }

    /// The type named `name`.
    pub fn get(&self, name: &str) -> Option<&ExchangeType> {
        self.types.get(name)
    }

    /// Every registered type name, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.types.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_plugin_api::abi::{ABI_MINOR, ByteView, ExchangeTypeVTable, LAYOUT_HASH, MAGIC};
    use warren_plugin_api::{
        Binding, Destinations, ExchangeType, FieldTable, Message, PluginError,
    };

    struct Reserved;

    impl ExchangeType for Reserved {
        const NAME: &'static str = "x-delayed-message";
        const DESCRIPTION: &'static str = "claims a reserved name";
        fn create(_: &str, _: &FieldTable<'_>) -> Result<Self, PluginError> {
            Ok(Reserved)
        }
        fn add_binding(&mut self, _: &Binding) -> Result<(), PluginError> {
            Ok(())
        }
        fn remove_bindings(&mut self, _: &[Binding]) -> Result<(), PluginError> {
            Ok(())
        }
        fn route(&self, _: &Message, _: &mut Destinations<'_>) -> Result<(), PluginError> {
            Ok(())
        }
    }

    static RESERVED_TYPES: [ExchangeTypeVTable; 1] =
        [warren_plugin_api::export::vtable::<Reserved>()];

    const fn header(magic: [u8; 8], minor: u32, layout_hash: u64) -> PluginHeader {
        PluginHeader {
            magic,
            abi_major: warren_plugin_api::abi::ABI_MAJOR,
            abi_minor: minor,
            layout_hash,
            plugin_name: ByteView::new(b"test"),
            plugin_version: ByteView::new(b"1"),
            exchange_types: RESERVED_TYPES.as_ptr(),
            exchange_type_count: 1,
        }
    }

    static BAD_MAGIC: PluginHeader = header(*b"NOTWARRN", ABI_MINOR, LAYOUT_HASH);
    static NEWER_MINOR: PluginHeader = header(MAGIC, ABI_MINOR + 1, LAYOUT_HASH);
    static OTHER_LAYOUT: PluginHeader = header(MAGIC, ABI_MINOR, LAYOUT_HASH ^ 1);
    static GOOD: PluginHeader = header(MAGIC, ABI_MINOR, LAYOUT_HASH);

    fn register(header: &'static PluginHeader) -> String {
        let origin = Origin::BuiltIn { plugin: "test" };
        let err =
            ExchangeTypeRegistry::empty().register_header(header, origin, Path::new("libtest.so"));
        err.unwrap_err().to_string()
    }

    #[test]
    fn builtins_register_the_four_amqp_types() {
        assert_eq!(
            ExchangeTypeRegistry::with_builtins().names(),
            ["direct", "fanout", "headers", "topic"]
        );
    }

    #[test]
    fn a_header_with_the_wrong_magic_is_refused() {
        assert!(register(&BAD_MAGIC).contains("invalid header: magic is"));
    }

    #[test]
    fn a_library_needing_a_newer_minor_is_refused() {
        let text = register(&NEWER_MINOR);
        assert!(
            text.contains(&format!(
                "it needs ABI 1.{} but this broker provides 1.{ABI_MINOR}",
                ABI_MINOR + 1
            )),
            "{text}"
        );
    }

    #[test]
    fn a_library_with_another_struct_layout_is_refused() {
        let text = register(&OTHER_LAYOUT);
        assert!(text.contains("struct layout hash"), "{text}");
        assert!(
            text.contains("incompatible copy of warren-plugin-api"),
            "{text}"
        );
    }

    #[test]
    fn a_plugin_cannot_claim_a_name_the_broker_reserves() {
        let text = register(&GOOD);
        assert!(text.contains("exchange type 'x-delayed-message'"), "{text}");
        assert!(
            text.contains("uses a name reserved by the broker"),
            "{text}"
        );
    }
}
