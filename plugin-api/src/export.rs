//! Trampolines from the C ABI into an [`ExchangeType`], and the macro that exports them.
//!
//! Every trampoline converts raw views into the SDK's borrowed types and runs the plugin code
//! inside `catch_unwind`: a panic fails that one call with [`Status::PANICKED`] and a 541
//! reply, and the broker carries on. Unwinding never crosses the `extern "C"` boundary.

use crate::abi::{
    BindingView, ByteView, DestinationsOut, ErrorOut, ExchangeHandle, ExchangeTypeVTable,
    MessageView, Status,
};
use crate::field_table::FieldTable;
use crate::sdk::{Binding, Destinations, ExchangeType, Message, PluginError, reply_code};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The vtable for `T`, suitable for a `static`.
pub const fn vtable<T: ExchangeType>() -> ExchangeTypeVTable {
    ExchangeTypeVTable {
        name: ByteView::new(T::NAME.as_bytes()),
        description: ByteView::new(T::DESCRIPTION.as_bytes()),
        validate: validate::<T>,
        create: create::<T>,
        delete: delete::<T>,
        validate_binding: validate_binding::<T>,
        add_binding: add_binding::<T>,
        remove_bindings: remove_bindings::<T>,
        route: route::<T>,
        assert_args_equivalence: assert_args_equivalence::<T>,
    }
}

/// Writes `code` and as much of `text` as fits (cut at a character boundary) into `error`.
///
/// # Safety
/// `error` is null or points at an `ErrorOut` whose `text` holds `capacity` writable bytes.
pub unsafe fn write_error(error: *mut ErrorOut, code: u16, text: &str) {
    // SAFETY: caller contract.
    let Some(error) = (unsafe { error.as_mut() }) else {
        return;
    };
    error.code = code;
    let mut len = text.len().min(error.capacity);
    while !text.is_char_boundary(len) {
        len -= 1;
    }
    if len > 0 && !error.text.is_null() {
        // SAFETY: `len <= capacity` bytes are writable at `text` (caller contract).
        unsafe { std::ptr::copy_nonoverlapping(text.as_ptr(), error.text, len) };
    }
    error.len = len;
}

/// Runs `call`, turning an error or a panic into a status and an error report.
fn guarded(error: *mut ErrorOut, call: impl FnOnce() -> Result<Status, PluginError>) -> Status {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            // SAFETY: the host passes a valid ErrorOut (ABI contract).
            unsafe { write_error(error, e.code, &e.text) };
            Status::FAILED
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("unknown panic");
            let text = format!("exchange type plugin panicked: {what}");
            // SAFETY: as above.
            unsafe { write_error(error, reply_code::INTERNAL_ERROR, &text) };
            Status::PANICKED
        }
    }
}

fn ok(r: Result<(), PluginError>) -> Result<Status, PluginError> {
    r.map(|()| Status::OK)
}

unsafe extern "C" fn validate<T: ExchangeType>(
    arguments: ByteView,
    error: *mut ErrorOut,
) -> Status {
    // SAFETY: the host keeps the argument bytes alive for the call.
    let args = FieldTable::new(unsafe { arguments.as_slice() });
    guarded(error, || ok(T::validate(&args)))
}

unsafe extern "C" fn create<T: ExchangeType>(
    exchange: ByteView,
    arguments: ByteView,
    handle: *mut ExchangeHandle,
    error: *mut ErrorOut,
) -> Status {
    // SAFETY: the host keeps both views alive for the call.
    let (name, args) = unsafe { (exchange.as_slice(), FieldTable::new(arguments.as_slice())) };
    guarded(error, || {
        let state = T::create(&String::from_utf8_lossy(name), &args)?;
        let raw = Box::into_raw(Box::new(state)) as ExchangeHandle;
        // SAFETY: the host passes a writable handle slot.
        unsafe { *handle = raw };
        Ok(Status::OK)
    })
}

unsafe extern "C" fn delete<T: ExchangeType>(handle: ExchangeHandle) {
    if handle.is_null() {
        return;
    }
    // A panicking Drop must not unwind into the host; the state is leaked in that case.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `handle` came from `create::<T>` and is deleted exactly once.
        drop(unsafe { Box::from_raw(handle as *mut T) });
    }));
}

/// # Safety
/// `handle` came from `create::<T>` and the host gives this call exclusive access to it.
unsafe fn state_mut<'a, T>(handle: ExchangeHandle) -> &'a mut T {
    // SAFETY: caller contract.
    unsafe { &mut *(handle as *mut T) }
}

unsafe extern "C" fn validate_binding<T: ExchangeType>(
    handle: ExchangeHandle,
    binding: *const BindingView,
    error: *mut ErrorOut,
) -> Status {
    // SAFETY: valid handle and binding for the call (ABI contract).
    let (state, binding) = unsafe { (&*(handle as *const T), Binding::from_view(&*binding)) };
    guarded(error, || ok(state.validate_binding(binding)))
}

unsafe extern "C" fn add_binding<T: ExchangeType>(
    handle: ExchangeHandle,
    binding: *const BindingView,
    error: *mut ErrorOut,
) -> Status {
    // SAFETY: mutations are exclusive on a handle (ABI contract); binding valid for the call.
    let (state, binding) = unsafe { (state_mut::<T>(handle), Binding::from_view(&*binding)) };
    guarded(error, || ok(state.add_binding(binding)))
}

unsafe extern "C" fn remove_bindings<T: ExchangeType>(
    handle: ExchangeHandle,
    bindings: *const BindingView,
    count: usize,
    error: *mut ErrorOut,
) -> Status {
    // SAFETY: mutations are exclusive; `count` views at `bindings` are valid for the call.
    let (state, bindings) = unsafe {
        let views = if bindings.is_null() {
            &[][..]
        } else {
            std::slice::from_raw_parts(bindings, count)
        };
        (state_mut::<T>(handle), Binding::from_views(views))
    };
    guarded(error, || ok(state.remove_bindings(bindings)))
}

unsafe extern "C" fn route<T: ExchangeType>(
    handle: ExchangeHandle,
    message: *const MessageView,
    out: *mut DestinationsOut,
    error: *mut ErrorOut,
) -> Status {
    // SAFETY: shared access is allowed concurrently (ABI contract); the message view and the
    // host's buffer are valid for the call.
    let (state, message, out) = unsafe {
        (
            &*(handle as *const T),
            Message::from_view(&*message),
            &mut *out,
        )
    };
    guarded(error, || {
        // SAFETY: the host's buffer holds `capacity` ids.
        let mut destinations = unsafe { Destinations::from_raw(out) };
        state.route(message, &mut destinations)?;
        Ok(if destinations.overflowed() {
            Status::BUFFER_TOO_SMALL
        } else {
            Status::OK
        })
    })
}

unsafe extern "C" fn assert_args_equivalence<T: ExchangeType>(
    handle: ExchangeHandle,
    arguments: ByteView,
    error: *mut ErrorOut,
) -> Status {
    // SAFETY: valid handle and argument bytes for the call.
    let (state, args) = unsafe {
        (
            &*(handle as *const T),
            FieldTable::new(arguments.as_slice()),
        )
    };
    guarded(error, || ok(state.assert_args_equivalence(&args)))
}

/// Exports one or more [`ExchangeType`]s from a plugin crate.
///
/// It always defines `pub fn warren_plugin_header() -> &'static PluginHeader`, which a host
/// that links the crate statically registers exactly as it registers a loaded library. With
/// the crate's `dylib` cargo feature enabled it also defines the unmangled entry symbol
/// [`ENTRY_SYMBOL`](crate::abi::ENTRY_SYMBOL) the host looks up in a shared library. The
/// symbol is behind a feature so that several plugins linked into one broker binary do not
/// define it twice.
///
/// ```text
/// warren_plugin_api::export_exchange_types! {
///     name: "my-plugin",
///     version: env!("CARGO_PKG_VERSION"),
///     types: [MyExchange],
/// }
/// ```
#[macro_export]
macro_rules! export_exchange_types {
    (name: $name:expr, version: $version:expr, types: [$($ty:ty),+ $(,)?] $(,)?) => {
        /// The plugin header of this crate: what the broker reads to register its types.
        pub fn warren_plugin_header() -> &'static $crate::abi::PluginHeader {
            static TYPES: &[$crate::abi::ExchangeTypeVTable] = &[$($crate::export::vtable::<$ty>()),+];
            static HEADER: $crate::abi::PluginHeader = $crate::abi::PluginHeader {
                magic: $crate::abi::MAGIC,
                abi_major: $crate::abi::ABI_MAJOR,
                abi_minor: $crate::abi::ABI_MINOR,
                layout_hash: $crate::abi::LAYOUT_HASH,
                plugin_name: $crate::abi::ByteView::new($name.as_bytes()),
                plugin_version: $crate::abi::ByteView::new($version.as_bytes()),
                exchange_types: TYPES.as_ptr(),
                exchange_type_count: TYPES.len(),
            };
            &HEADER
        }

        /// Entry symbol of the shared-library build.
        #[cfg(feature = "dylib")]
        #[unsafe(no_mangle)]
        pub extern "C" fn warren_exchange_plugin_v1() -> *const $crate::abi::PluginHeader {
            warren_plugin_header()
        }
    };
}
