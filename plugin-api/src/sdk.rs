//! The safe side of the ABI: what a plugin author implements.
//!
//! Implement [`ExchangeType`] for a struct that holds one exchange's routing index, then
//! export it with [`export_exchange_types!`](crate::export_exchange_types). The macro builds
//! the static vtables and wraps every call in a trampoline that converts views into these
//! borrowed types and catches panics, so plugin code never touches a raw pointer.

use crate::abi::{BindingView, ByteView, DestinationsOut, MessageView};
use crate::field_table::FieldTable;
use std::borrow::Cow;
use std::fmt;

/// AMQP reply codes a plugin typically answers with.
pub mod reply_code {
    /// The request is refused because of its arguments (channel closes).
    pub const PRECONDITION_FAILED: u16 = 406;
    /// Something is missing (channel closes).
    pub const NOT_FOUND: u16 = 404;
    /// The request makes no sense here (connection closes).
    pub const COMMAND_INVALID: u16 = 503;
    /// The feature is not implemented.
    pub const NOT_IMPLEMENTED: u16 = 540;
    /// The plugin broke down.
    pub const INTERNAL_ERROR: u16 = 541;
}

/// An error a plugin reports to the client: an AMQP reply code and a human-readable text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginError {
    /// AMQP reply code.
    pub code: u16,
    /// Explanation a person can act on (the host adds the `NAME - ` prefix).
    pub text: Cow<'static, str>,
}

impl PluginError {
    /// An error with any reply code.
    pub fn new(code: u16, text: impl Into<Cow<'static, str>>) -> Self {
        PluginError {
            code,
            text: text.into(),
        }
    }

    /// 406 PRECONDITION_FAILED: the usual answer to a bad argument or binding key.
    pub fn precondition_failed(text: impl Into<Cow<'static, str>>) -> Self {
        Self::new(reply_code::PRECONDITION_FAILED, text)
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

impl std::error::Error for PluginError {}

/// Opaque id of a binding's destination (a queue or an exchange), assigned by the host.
/// Plugins store and return it; they never interpret it.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DestinationId(pub u64);

/// One binding, borrowed from the host for the duration of a call.
#[repr(transparent)]
pub struct Binding(BindingView);

impl Binding {
    /// Reinterprets raw views as bindings without copying.
    ///
    /// # Safety
    /// Every view must satisfy [`ByteView::as_slice`]'s contract for the returned lifetime.
    pub unsafe fn from_views(views: &[BindingView]) -> &[Binding] {
        // SAFETY: `Binding` is `repr(transparent)` over `BindingView`.
        unsafe { &*(views as *const [BindingView] as *const [Binding]) }
    }

    /// Wraps one view. Host-side code uses this to build bindings for direct calls.
    ///
    /// # Safety
    /// As for [`Binding::from_views`].
    pub unsafe fn from_view(view: &BindingView) -> &Binding {
        // SAFETY: `Binding` is `repr(transparent)` over `BindingView`.
        unsafe { &*(view as *const BindingView as *const Binding) }
    }

    /// Where matching messages go.
    pub fn destination(&self) -> DestinationId {
        DestinationId(self.0.destination)
    }

    /// The binding key as sent by the client.
    pub fn key(&self) -> &[u8] {
        // SAFETY: the host keeps the key alive for the call (type-level contract above).
        unsafe { self.0.key.as_slice() }
    }

    /// The binding key as text, if it is UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        std::str::from_utf8(self.key()).ok()
    }

    /// The binding arguments.
    pub fn arguments(&self) -> FieldTable<'_> {
        // SAFETY: as for `key`.
        FieldTable::new(unsafe { self.0.arguments.as_slice() })
    }
}

impl fmt::Debug for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Binding")
            .field("destination", &self.destination())
            .field("key", &String::from_utf8_lossy(self.key()))
            .field("arguments", &self.arguments())
            .finish()
    }
}

/// The message being routed, borrowed from the host for one `route` call.
#[repr(transparent)]
pub struct Message(MessageView);

impl Message {
    /// Wraps a raw view.
    ///
    /// # Safety
    /// Every pointer in the view must be valid for the returned lifetime.
    pub unsafe fn from_view(view: &MessageView) -> &Message {
        // SAFETY: `Message` is `repr(transparent)` over `MessageView`.
        unsafe { &*(view as *const MessageView as *const Message) }
    }

    /// Name of the exchange the message was published to.
    pub fn exchange(&self) -> &[u8] {
        // SAFETY: the host keeps the view's bytes alive for the call.
        unsafe { self.0.exchange.as_slice() }
    }

    /// The routing keys: the publish key first, then CC and BCC entries.
    pub fn routing_keys(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        let keys: &[ByteView] = if self.0.routing_keys.is_null() {
            &[]
        } else {
            // SAFETY: the host passes `routing_key_count` views, alive for the call.
            unsafe { std::slice::from_raw_parts(self.0.routing_keys, self.0.routing_key_count) }
        };
        // SAFETY: each key's bytes are alive for the call.
        keys.iter().map(|k| unsafe { k.as_slice() })
    }

    /// The publish routing key (the first of [`Message::routing_keys`]).
    pub fn routing_key(&self) -> &[u8] {
        self.routing_keys().next().unwrap_or(&[])
    }

    /// The message's `headers` property, decoded lazily.
    pub fn headers(&self) -> FieldTable<'_> {
        // SAFETY: as for `exchange`.
        FieldTable::new(unsafe { self.0.headers.as_slice() })
    }
}

/// Where `route` writes its answer: a host-owned buffer, so routing allocates nothing.
pub struct Destinations<'a> {
    out: &'a mut DestinationsOut,
}

impl<'a> Destinations<'a> {
    /// Wraps the host's buffer and resets its length.
    ///
    /// # Safety
    /// `out.ids` must point at `out.capacity` writable `u64`s for `'a`.
    pub unsafe fn from_raw(out: &'a mut DestinationsOut) -> Self {
        out.len = 0;
        Destinations { out }
    }

    /// Adds a destination. Duplicates are fine: the host removes them. When the buffer is
    /// full the id is counted but not stored, and the host calls `route` again with room.
    #[inline]
    pub fn push(&mut self, id: DestinationId) {
        if self.out.len < self.out.capacity {
            // SAFETY: `len < capacity` and `ids` holds `capacity` elements (from_raw).
            unsafe { *self.out.ids.add(self.out.len) = id.0 };
        }
        self.out.len += 1;
    }

    /// Adds every destination of an iterator.
    pub fn extend(&mut self, ids: impl IntoIterator<Item = DestinationId>) {
        for id in ids {
            self.push(id);
        }
    }

    /// Number of destinations pushed so far (stored or not).
    pub fn len(&self) -> usize {
        self.out.len
    }

    /// True when nothing was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.out.len == 0
    }

    /// True when more was pushed than the buffer holds.
    pub fn overflowed(&self) -> bool {
        self.out.len > self.out.capacity
    }
}

/// One exchange type, with the behaviour of RabbitMQ's exchange-type callbacks.
///
/// A value of the implementing type is the state of **one exchange**: `create` makes it when
/// a client declares an exchange of this type, and it is dropped when the exchange is deleted.
/// The broker owns the bindings (it persists them and replays `add_binding` on recovery); the
/// plugin keeps whatever index makes `route` fast, keyed by [`DestinationId`].
///
/// `route` takes `&self` and runs concurrently from many threads; the `&mut self` methods are
/// serialised by the host and never overlap a `route` on the same exchange.
pub trait ExchangeType: Send + Sync + Sized + 'static {
    /// The type name clients declare (`direct`, `x-consistent-hash`, …).
    const NAME: &'static str;
    /// One line for operators.
    const DESCRIPTION: &'static str;

    /// Checks exchange-declare arguments; called before `create` and for passive checks.
    fn validate(arguments: &FieldTable<'_>) -> Result<(), PluginError> {
        let _ = arguments;
        Ok(())
    }

    /// Creates the state of a new exchange.
    fn create(exchange: &str, arguments: &FieldTable<'_>) -> Result<Self, PluginError>;

    /// Refuses a binding before the broker records it (e.g. a key that is not a weight).
    fn validate_binding(&self, binding: &Binding) -> Result<(), PluginError> {
        let _ = binding;
        Ok(())
    }

    /// Adds a binding the broker has recorded. Must accept any binding `validate_binding`
    /// accepted, since it is replayed on recovery.
    fn add_binding(&mut self, binding: &Binding) -> Result<(), PluginError>;

    /// Removes bindings (several at once when a queue or exchange goes away). Each one was
    /// added before with the same destination, key and arguments.
    fn remove_bindings(&mut self, bindings: &[Binding]) -> Result<(), PluginError>;

    /// Pushes the destinations of `message`. Must not allocate per call if it is to keep
    /// the broker's publish path lean.
    fn route(
        &self,
        message: &Message,
        destinations: &mut Destinations<'_>,
    ) -> Result<(), PluginError>;

    /// Checks a redeclare's arguments against the ones this exchange was created with.
    /// The broker itself compares type, durability, auto-delete, internal and
    /// `alternate-exchange`; this is for type-specific arguments.
    fn assert_args_equivalence(&self, arguments: &FieldTable<'_>) -> Result<(), PluginError> {
        let _ = arguments;
        Ok(())
    }
}
