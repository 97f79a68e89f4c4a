//! The host side of one exchange type's vtable.
//!
//! Built-in types and loaded libraries are called the same way, through the C vtable, so the
//! path a plugin author's code takes is the path the built-ins prove every day. Everything a
//! plugin hands back is checked here: reply codes, text lengths, status values and destination
//! counts; a plugin that panics or misbehaves fails one call with 541 and nothing more.

use crate::error::AmqpError;
use crate::protocol::ReplyCode;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use warren_plugin_api::abi::{
    BindingView, ByteView, DestinationsOut, ErrorOut, ExchangeHandle, ExchangeTypeVTable,
    MessageView, Status,
};

/// Where an exchange type came from, for logs and error texts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Linked into the broker binary.
    BuiltIn {
        /// The plugin crate's name.
        plugin: &'static str,
    },
    /// Loaded from a shared library in the plugins directory.
    Library {
        /// The library file.
        path: Arc<PathBuf>,
        /// The plugin's self-declared name.
        plugin: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::BuiltIn { plugin } => write!(f, "built-in plugin {plugin}"),
            Origin::Library { path, plugin } => write!(f, "plugin {plugin} ({})", path.display()),
        }
    }
}

/// A registered exchange type. Cheap to clone; the vtable is `'static` because libraries are
/// never unloaded.
#[derive(Clone, Debug)]
pub struct ExchangeType {
    vtable: &'static ExchangeTypeVTable,
    name: Arc<str>,
    description: Arc<str>,
    origin: Origin,
}

/// Reply texts are shortstrs, so 255 bytes always suffice; anything longer is cut.
const ERROR_TEXT_CAPACITY: usize = 255;

/// Keys beyond this many per message are routed through a heap buffer; fewer use the stack.
const INLINE_KEYS: usize = 8;

/// Destination buffers start at least this large so the common case never retries.
const MIN_DESTINATIONS: usize = 16;

/// A plugin asking for more room than this is misbehaving, not routing.
const MAX_DESTINATIONS: usize = 1 << 24;

/// Calls into the plugin with an error buffer on the stack and turns the status into a result.
fn call(
    type_name: &str,
    what: &str,
    f: impl FnOnce(*mut ErrorOut) -> Status,
) -> Result<Status, AmqpError> {
    let mut text = [0u8; ERROR_TEXT_CAPACITY];
    let mut error = ErrorOut {
        code: 0,
        text: text.as_mut_ptr(),
        capacity: text.len(),
        len: 0,
    };
    let status = f(&mut error);
    if status == Status::OK || status == Status::BUFFER_TOO_SMALL {
        return Ok(status);
    }
    let len = error.len.min(text.len());
    let message = String::from_utf8_lossy(&text[..len]).into_owned();
    match status {
        Status::FAILED => match plugin_reply_code(error.code) {
            Some(code) => Err(AmqpError::new(code, message)),
            None => {
                tracing::warn!(
                    exchange_type = type_name,
                    code = error.code,
                    "plugin {what} failed with an invalid reply code: {message}"
                );
                Err(AmqpError::internal(format!(
                    "exchange type '{type_name}' failed in {what}: {message}"
                )))
            }
        },
        Status::PANICKED => {
            tracing::error!(
                exchange_type = type_name,
                "plugin {what} panicked: {message}"
            );
            Err(AmqpError::internal(format!(
                "exchange type '{type_name}' failed in {what}: {message}"
            )))
        }
        Status(other) => {
            tracing::error!(
                exchange_type = type_name,
                status = other,
                "plugin {what} returned an unknown status"
            );
            Err(AmqpError::internal(format!(
                "exchange type '{type_name}' returned unknown status {other} from {what}"
            )))
        }
    }
}

/// Codes a plugin may answer with: the channel errors a declare or bind can end in, and
/// 503/540/541. Anything else (200, 320, 501, …) would let a plugin close connections for
/// reasons that are not its to give.
fn plugin_reply_code(code: u16) -> Option<ReplyCode> {
    matches!(code, 403..=406 | 503 | 540 | 541)
        .then(|| ReplyCode::from_code(code))
        .flatten()
}

impl ExchangeType {
    /// Wraps a vtable already checked by the registry.
    pub(crate) fn new(
        vtable: &'static ExchangeTypeVTable,
        name: String,
        description: String,
        origin: Origin,
    ) -> Self {
        ExchangeType {
            vtable,
            name: name.into(),
            description: description.into(),
            origin,
        }
    }

    /// The type name clients declare.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin's one-line description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Where the type came from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Checks exchange-declare arguments (encoded field-table bytes, no length prefix).
    pub fn validate(&self, arguments: &[u8]) -> Result<(), AmqpError> {
        let validate = self.vtable.validate;
        // SAFETY: the arguments outlive the call; the error buffer is valid (see `call`).
        call(&self.name, "validate", |e| unsafe {
            validate(ByteView::new(arguments), e)
        })?;
        Ok(())
    }

    /// Creates the plugin-side state of one exchange.
    pub fn create(&self, exchange: &str, arguments: &[u8]) -> Result<ExchangeRouter, AmqpError> {
        let create = self.vtable.create;
        let mut handle: ExchangeHandle = std::ptr::null_mut();
        // SAFETY: the views outlive the call; `handle` is a writable slot.
        call(&self.name, "create", |e| unsafe {
            create(
                ByteView::new(exchange.as_bytes()),
                ByteView::new(arguments),
                &mut handle,
                e,
            )
        })?;
        if handle.is_null() {
            return Err(AmqpError::internal(format!(
                "exchange type '{}' created no state",
                self.name
            )));
        }
        Ok(ExchangeRouter {
            exchange_type: self.clone(),
            handle,
        })
    }
}

/// The message-side input of one routing decision, borrowed from the publish path.
pub struct RouteRequest<'a> {
    /// The exchange the message was published to.
    pub exchange: &'a [u8],
    /// Publish routing key first, then CC and BCC entries.
    pub routing_keys: &'a [&'a [u8]],
    /// The `headers` property as field-table bytes (no length prefix), or empty.
    pub headers: &'a [u8],
}

/// One exchange's plugin-side routing state (the plugin's handle) and the calls on it.
///
/// Invariant: `route` takes `&self` and may run on many threads at once; the binding calls
/// take `&mut self`, so whoever owns the router (behind a `RwLock` per exchange) serialises
/// them, as the ABI's concurrency contract requires. Dropping it releases the plugin state.
pub struct ExchangeRouter {
    exchange_type: ExchangeType,
    handle: ExchangeHandle,
}

// SAFETY: the ABI requires plugin state to be usable from any thread (the SDK trait demands
// `Send + Sync`), with `route` concurrent and everything else exclusive — which `&self` /
// `&mut self` on this type enforce.
unsafe impl Send for ExchangeRouter {}
// SAFETY: as above.
unsafe impl Sync for ExchangeRouter {}

impl ExchangeRouter {
    /// The type this exchange is of.
    pub fn exchange_type(&self) -> &ExchangeType {
        &self.exchange_type
    }

    fn binding_view(destination: u64, key: &[u8], arguments: &[u8]) -> BindingView {
        BindingView {
            destination,
            key: ByteView::new(key),
            arguments: ByteView::new(arguments),
        }
    }

    /// Asks the plugin whether it would accept this binding.
    pub fn validate_binding(
        &self,
        destination: u64,
        key: &[u8],
        arguments: &[u8],
    ) -> Result<(), AmqpError> {
        let (f, view) = (
            self.exchange_type.vtable.validate_binding,
            Self::binding_view(destination, key, arguments),
        );
        // SAFETY: handle from `create`; the view outlives the call.
        call(&self.exchange_type.name, "validate_binding", |e| unsafe {
            f(self.handle, &view, e)
        })?;
        Ok(())
    }

    /// Adds a binding the broker has recorded.
    pub fn add_binding(
        &mut self,
        destination: u64,
        key: &[u8],
        arguments: &[u8],
    ) -> Result<(), AmqpError> {
        let (f, view) = (
            self.exchange_type.vtable.add_binding,
            Self::binding_view(destination, key, arguments),
        );
        // SAFETY: handle from `create`; `&mut self` makes the call exclusive.
        call(&self.exchange_type.name, "add_binding", |e| unsafe {
            f(self.handle, &view, e)
        })?;
        Ok(())
    }

    /// Removes bindings, each given as (destination, key, arguments).
    pub fn remove_bindings<'b>(
        &mut self,
        bindings: impl IntoIterator<Item = (u64, &'b [u8], &'b [u8])>,
    ) -> Result<(), AmqpError> {
        let views: Vec<BindingView> = bindings
            .into_iter()
            .map(|(d, k, a)| Self::binding_view(d, k, a))
            .collect();
        let f = self.exchange_type.vtable.remove_bindings;
        // SAFETY: handle from `create`; exclusive; `views` outlives the call.
        call(&self.exchange_type.name, "remove_bindings", |e| unsafe {
            f(self.handle, views.as_ptr(), views.len(), e)
        })?;
        Ok(())
    }

    /// Checks a redeclare's arguments against this exchange's.
    pub fn assert_args_equivalence(&self, arguments: &[u8]) -> Result<(), AmqpError> {
        let f = self.exchange_type.vtable.assert_args_equivalence;
        let check = |e| {
            // SAFETY: handle from `create`; the arguments outlive the call.
            unsafe { f(self.handle, ByteView::new(arguments), e) }
        };
        call(&self.exchange_type.name, "assert_args_equivalence", check)?;
        Ok(())
    }

    /// Routes one message, leaving its distinct destination ids in `out` (cleared first).
    ///
    /// Hot path: `out` is the caller's reusable buffer and the keys go through a stack array,
    /// so a message with at most [`INLINE_KEYS`] routing keys allocates nothing once `out` has
    /// grown to the exchange's usual fan-out.
    pub fn route(&self, request: &RouteRequest<'_>, out: &mut Vec<u64>) -> Result<(), AmqpError> {
        let mut inline = [ByteView::EMPTY; INLINE_KEYS];
        let spilled: Vec<ByteView>;
        let keys: &[ByteView] = if request.routing_keys.len() <= INLINE_KEYS {
            for (slot, key) in inline.iter_mut().zip(request.routing_keys) {
                *slot = ByteView::new(key);
            }
            &inline[..request.routing_keys.len()]
        } else {
            spilled = request
                .routing_keys
                .iter()
                .map(|k| ByteView::new(k))
                .collect();
            &spilled
        };
        let message = MessageView {
            exchange: ByteView::new(request.exchange),
            routing_keys: keys.as_ptr(),
            routing_key_count: keys.len(),
            headers: ByteView::new(request.headers),
        };
        let route = self.exchange_type.vtable.route;
        // The buffer is zero-filled rather than left uninitialised, so a plugin that claims
        // more ids than it wrote yields bogus ids (ignored by the caller's lookup), never a
        // read of uninitialised memory.
        let mut room = out.capacity().max(MIN_DESTINATIONS);
        // An honest plugin asks for more room at most once per call; the third refusal in a
        // row means it is not honest.
        for _ in 0..3 {
            out.clear();
            out.resize(room, 0);
            let mut buffer = DestinationsOut {
                ids: out.as_mut_ptr(),
                capacity: room,
                len: 0,
            };
            // SAFETY: handle from `create` (shared access allowed); `message` and its views
            // outlive the call; `buffer` spans `room` initialised ids of `out`.
            let status = call(&self.exchange_type.name, "route", |e| unsafe {
                route(self.handle, &message, &mut buffer, e)
            })?;
            if status == Status::OK {
                out.truncate(buffer.len.min(room));
                if out.len() > 1 {
                    out.sort_unstable();
                    out.dedup();
                }
                return Ok(());
            }
            if buffer.len <= room || buffer.len > MAX_DESTINATIONS {
                break;
            }
            room = buffer.len;
        }
        Err(AmqpError::internal(format!(
            "exchange type '{}' returned an inconsistent number of destinations",
            self.exchange_type.name
        )))
    }
}

impl Drop for ExchangeRouter {
    fn drop(&mut self) {
        // SAFETY: the handle came from this type's `create` and is released exactly once.
        unsafe { (self.exchange_type.vtable.delete)(self.handle) };
    }
}

impl fmt::Debug for ExchangeRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeRouter")
            .field("type", &self.exchange_type.name)
            .finish()
    }
}
