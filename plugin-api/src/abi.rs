//! The raw C ABI between the broker and an exchange-type library.
//!
//! Everything here is `repr(C)` and made only of integers, byte views (`ptr + len`) and opaque
//! handles, so a plugin can be written in any language that speaks the C calling convention.
//! Ownership is explicit in every signature: a byte view is borrowed for the length of one
//! call, a buffer the host passes is owned by the host, and a handle the plugin returns is
//! owned by the plugin (the host gives it back through `delete`, never frees it itself).
//!
//! The layout is frozen for a given [`ABI_MAJOR`]. The host checks [`PluginHeader::layout_hash`]
//! against its own [`LAYOUT_HASH`] so that a library built against a differently shaped copy of
//! these structs is refused at load time instead of corrupting memory at the first call.

use core::ffi::c_void;
use core::mem::{align_of, offset_of, size_of};

/// Breaking ABI version. It is part of the entry symbol's name, so a library built for
/// another major does not even resolve the symbol this host looks for.
pub const ABI_MAJOR: u32 = 1;

/// Additive ABI version. A host accepts libraries whose minor is at most its own.
pub const ABI_MINOR: u32 = 0;

/// Prefix of the entry symbol; the major version is appended (`warren_exchange_plugin_v1`).
pub const ENTRY_SYMBOL_PREFIX: &str = "warren_exchange_plugin_v";

/// Name of the entry symbol for this major, NUL-terminated for dynamic loaders.
pub const ENTRY_SYMBOL: &[u8] = b"warren_exchange_plugin_v1\0";

/// First bytes of every [`PluginHeader`]; catches a symbol that points at something else.
pub const MAGIC: [u8; 8] = *b"WARRENXT";

/// Signature of the entry symbol. It must return a pointer to a header that lives as long as
/// the library stays loaded (the host never unloads, so in practice: a `static`).
pub type EntryFn = unsafe extern "C" fn() -> *const PluginHeader;

/// Opaque per-exchange state created by the plugin's `create` and released by its `delete`.
pub type ExchangeHandle = *mut c_void;

/// A borrowed byte string: valid only for the duration of the call it is passed to, unless
/// it points into the plugin's own static data (names and descriptions in the header).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ByteView {
    /// Start of the bytes; may be null when `len` is 0.
    pub ptr: *const u8,
    /// Number of bytes.
    pub len: usize,
}

impl ByteView {
    /// A view of `bytes`; the caller keeps `bytes` alive for as long as the view is used.
    pub const fn new(bytes: &[u8]) -> Self {
        ByteView {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// The empty view.
    pub const EMPTY: ByteView = ByteView {
        ptr: core::ptr::null(),
        len: 0,
    };

    /// Reads the viewed bytes back as a slice.
    ///
    /// # Safety
    /// `ptr` must be null with `len == 0`, or point at `len` readable bytes that outlive `'a`.
    pub unsafe fn as_slice<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            // SAFETY: the caller guarantees `len` readable bytes at `ptr` for `'a`.
            unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// Result of every fallible call. A plain integer rather than a Rust enum, so that an
/// unexpected value from a misbehaving library is a value the host can reject, not
/// undefined behaviour.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub u32);

impl Status {
    /// The call succeeded.
    pub const OK: Status = Status(0);
    /// The call failed; the reply code and text are in the [`ErrorOut`].
    pub const FAILED: Status = Status(1);
    /// `route` found more destinations than fit; [`DestinationsOut::len`] says how many.
    /// The host grows its buffer and calls again.
    pub const BUFFER_TOO_SMALL: Status = Status(2);
    /// The plugin panicked (or otherwise broke down); the [`ErrorOut`] says what it knows.
    pub const PANICKED: Status = Status(3);
}

/// Host-owned buffer the plugin writes an error into: an AMQP reply code and a text.
#[repr(C)]
#[derive(Debug)]
pub struct ErrorOut {
    /// AMQP reply code, e.g. 406 PRECONDITION_FAILED. Written by the plugin.
    pub code: u16,
    /// Host-owned buffer for the reply text (UTF-8).
    pub text: *mut u8,
    /// Size of `text` in bytes; the plugin truncates to it.
    pub capacity: usize,
    /// Bytes written to `text`. Written by the plugin.
    pub len: usize,
}

/// One binding as the host tells it to the plugin.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BindingView {
    /// Host-assigned opaque id of the bound queue or exchange.
    pub destination: u64,
    /// The binding key (an AMQP shortstr, not necessarily UTF-8).
    pub key: ByteView,
    /// The binding arguments as encoded AMQP field-table bytes (without the length prefix).
    pub arguments: ByteView,
}

/// The message being routed, borrowed from the host for one `route` call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MessageView {
    /// Name of the exchange the message was published to.
    pub exchange: ByteView,
    /// The routing keys: the publish key first, then any CC and BCC header entries.
    pub routing_keys: *const ByteView,
    /// Number of entries at `routing_keys` (at least 1).
    pub routing_key_count: usize,
    /// The message's `headers` property as encoded field-table bytes (without the length
    /// prefix); empty when the message has none.
    pub headers: ByteView,
}

/// Host-owned buffer `route` writes destination ids into.
#[repr(C)]
#[derive(Debug)]
pub struct DestinationsOut {
    /// Host-owned array of `capacity` ids.
    pub ids: *mut u64,
    /// Number of ids `ids` can hold.
    pub capacity: usize,
    /// Number of destinations found. Written by the plugin; may exceed `capacity`, in which
    /// case only the first `capacity` were stored and the plugin returns
    /// [`Status::BUFFER_TOO_SMALL`]. Duplicates are allowed; the host removes them.
    pub len: usize,
}

/// Checks exchange-declare arguments before any exchange exists.
pub type ValidateFn = unsafe extern "C" fn(arguments: ByteView, error: *mut ErrorOut) -> Status;
/// Creates the state of one exchange and stores its handle in `handle`.
pub type CreateFn = unsafe extern "C" fn(
    exchange: ByteView,
    arguments: ByteView,
    handle: *mut ExchangeHandle,
    error: *mut ErrorOut,
) -> Status;
/// Releases an exchange's state. Called once per successful `create`.
pub type DeleteFn = unsafe extern "C" fn(handle: ExchangeHandle);
/// Checks or adds one binding.
pub type BindingFn = unsafe extern "C" fn(
    handle: ExchangeHandle,
    binding: *const BindingView,
    error: *mut ErrorOut,
) -> Status;
/// Removes `count` bindings at once (a queue going away takes all its bindings with it).
pub type RemoveBindingsFn = unsafe extern "C" fn(
    handle: ExchangeHandle,
    bindings: *const BindingView,
    count: usize,
    error: *mut ErrorOut,
) -> Status;
/// Routes one message. The only call the host makes concurrently on one handle.
pub type RouteFn = unsafe extern "C" fn(
    handle: ExchangeHandle,
    message: *const MessageView,
    out: *mut DestinationsOut,
    error: *mut ErrorOut,
) -> Status;
/// Checks that a redeclare's arguments are equivalent to the ones the exchange was made with.
pub type ArgsEquivalenceFn = unsafe extern "C" fn(
    handle: ExchangeHandle,
    arguments: ByteView,
    error: *mut ErrorOut,
) -> Status;

/// One exchange type a library provides, modelled on RabbitMQ's exchange-type behaviour.
///
/// Concurrency contract: the host may call `route` on one handle from many threads at once;
/// every other call on a handle is exclusive with all calls on the same handle. `validate`
/// may run at any time from any thread.
#[repr(C)]
#[derive(Debug)]
pub struct ExchangeTypeVTable {
    /// Type name clients pass to `exchange.declare` (e.g. `x-consistent-hash`).
    pub name: ByteView,
    /// One line for operators.
    pub description: ByteView,
    /// See [`ValidateFn`].
    pub validate: ValidateFn,
    /// See [`CreateFn`].
    pub create: CreateFn,
    /// See [`DeleteFn`].
    pub delete: DeleteFn,
    /// Refuses a binding before the host records it. See [`BindingFn`].
    pub validate_binding: BindingFn,
    /// Adds a binding the host has recorded (also replayed on recovery). See [`BindingFn`].
    pub add_binding: BindingFn,
    /// See [`RemoveBindingsFn`].
    pub remove_bindings: RemoveBindingsFn,
    /// See [`RouteFn`].
    pub route: RouteFn,
    /// See [`ArgsEquivalenceFn`].
    pub assert_args_equivalence: ArgsEquivalenceFn,
}

/// What the entry symbol returns: who the library is and what it provides.
#[repr(C)]
#[derive(Debug)]
pub struct PluginHeader {
    /// Always [`MAGIC`].
    pub magic: [u8; 8],
    /// [`ABI_MAJOR`] the library was built with.
    pub abi_major: u32,
    /// [`ABI_MINOR`] the library was built with.
    pub abi_minor: u32,
    /// [`LAYOUT_HASH`] the library was built with.
    pub layout_hash: u64,
    /// Name of the library, for logs.
    pub plugin_name: ByteView,
    /// Version of the library, for logs.
    pub plugin_version: ByteView,
    /// The exchange types provided.
    pub exchange_types: *const ExchangeTypeVTable,
    /// Number of entries at `exchange_types`.
    pub exchange_type_count: usize,
}

// SAFETY: a header and its vtables are immutable data (pointers to static bytes and function
// pointers); sharing them between threads cannot race.
unsafe impl Sync for PluginHeader {}
// SAFETY: as above.
unsafe impl Sync for ExchangeTypeVTable {}
// SAFETY: as above; a `ByteView` in a header points at static bytes.
unsafe impl Sync for ByteView {}

/// Fingerprint of the size, alignment and field offsets of every struct above, and of the
/// ABI major. Two builds agree on it exactly when they agree on the memory layout.
pub const LAYOUT_HASH: u64 = layout_hash();

const fn layout_hash() -> u64 {
    let facts: [usize; 52] = [
        ABI_MAJOR as usize,
        size_of::<ByteView>(),
        align_of::<ByteView>(),
        offset_of!(ByteView, ptr),
        offset_of!(ByteView, len),
        size_of::<Status>(),
        size_of::<ErrorOut>(),
        align_of::<ErrorOut>(),
        offset_of!(ErrorOut, code),
        offset_of!(ErrorOut, text),
        offset_of!(ErrorOut, capacity),
        offset_of!(ErrorOut, len),
        size_of::<BindingView>(),
        offset_of!(BindingView, destination),
        offset_of!(BindingView, key),
        offset_of!(BindingView, arguments),
        size_of::<MessageView>(),
        offset_of!(MessageView, exchange),
        offset_of!(MessageView, routing_keys),
        offset_of!(MessageView, routing_key_count),
        offset_of!(MessageView, headers),
        size_of::<DestinationsOut>(),
        offset_of!(DestinationsOut, ids),
        offset_of!(DestinationsOut, capacity),
        offset_of!(DestinationsOut, len),
        size_of::<ExchangeTypeVTable>(),
        align_of::<ExchangeTypeVTable>(),
        offset_of!(ExchangeTypeVTable, name),
        offset_of!(ExchangeTypeVTable, description),
        offset_of!(ExchangeTypeVTable, validate),
        offset_of!(ExchangeTypeVTable, create),
        offset_of!(ExchangeTypeVTable, delete),
        offset_of!(ExchangeTypeVTable, validate_binding),
        offset_of!(ExchangeTypeVTable, add_binding),
        offset_of!(ExchangeTypeVTable, remove_bindings),
        offset_of!(ExchangeTypeVTable, route),
        offset_of!(ExchangeTypeVTable, assert_args_equivalence),
        size_of::<PluginHeader>(),
        align_of::<PluginHeader>(),
        offset_of!(PluginHeader, magic),
        offset_of!(PluginHeader, abi_major),
        offset_of!(PluginHeader, abi_minor),
        offset_of!(PluginHeader, layout_hash),
        offset_of!(PluginHeader, plugin_name),
        offset_of!(PluginHeader, plugin_version),
        offset_of!(PluginHeader, exchange_types),
        offset_of!(PluginHeader, exchange_type_count),
        size_of::<usize>(),
        size_of::<u64>(),
        align_of::<u64>(),
        size_of::<*const u8>(),
        size_of::<ExchangeHandle>(),
    ];
    // FNV-1a over the facts, each as 8 little-endian bytes.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < facts.len() {
        let bytes = (facts[i] as u64).to_le_bytes();
        let mut j = 0;
        while j < 8 {
            hash ^= bytes[j] as u64;
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            j += 1;
        }
        i += 1;
    }
    hash
}
