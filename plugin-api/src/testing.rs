//! Driving an exchange type from its own unit tests, through the same views the broker
//! passes, without writing any `unsafe`.
//!
//! Every plugin needs this to test its routing; it lives here once so that each plugin's
//! tests contain only their cases. Calls go straight to the trait (not through the vtable):
//! what is tested is the plugin's logic, and the vtable path is the SDK's, tested by the broker.

use crate::abi::{BindingView, ByteView, DestinationsOut, MessageView};
use crate::sdk::{Binding, Destinations, ExchangeType, Message, PluginError};

fn view(destination: u64, key: &[u8], arguments: &[u8]) -> BindingView {
    BindingView {
        destination,
        key: ByteView::new(key),
        arguments: ByteView::new(arguments),
    }
}

/// `validate_binding` for a binding with this key and arguments (field-table bytes).
pub fn validate_binding<T: ExchangeType>(
    exchange: &T,
    destination: u64,
    key: &[u8],
    arguments: &[u8],
) -> Result<(), PluginError> {
    let view = view(destination, key, arguments);
    // SAFETY: the view borrows `key` and `arguments`, which outlive the call.
    exchange.validate_binding(unsafe { Binding::from_view(&view) })
}

/// `add_binding` for a binding with this key and arguments (field-table bytes).
pub fn add_binding<T: ExchangeType>(
    exchange: &mut T,
    destination: u64,
    key: &[u8],
    arguments: &[u8],
) -> Result<(), PluginError> {
    let view = view(destination, key, arguments);
    // SAFETY: as in `validate_binding`.
    exchange.add_binding(unsafe { Binding::from_view(&view) })
}

/// `remove_bindings` for the one binding with this key and arguments.
pub fn remove_binding<T: ExchangeType>(
    exchange: &mut T,
    destination: u64,
    key: &[u8],
    arguments: &[u8],
) -> Result<(), PluginError> {
    let views = [view(destination, key, arguments)];
    // SAFETY: as in `validate_binding`.
    exchange.remove_bindings(unsafe { Binding::from_views(&views) })
}

/// Routes a message with these routing keys (publish key first) and headers (field-table
/// bytes, possibly empty); returns the destinations sorted and deduplicated, as the broker
/// would use them.
pub fn route<T: ExchangeType>(
    exchange: &T,
    routing_keys: &[&[u8]],
    headers: &[u8],
) -> Result<Vec<u64>, PluginError> {
    let mut ids = route_raw(exchange, routing_keys, headers)?;
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// As [`route`], but the ids exactly as the plugin pushed them: in its order, duplicates
/// included. Starts with a one-id buffer so the grow-and-retry path is always taken when
/// more than one id is pushed.
pub fn route_raw<T: ExchangeType>(
    exchange: &T,
    routing_keys: &[&[u8]],
    headers: &[u8],
) -> Result<Vec<u64>, PluginError> {
    let keys: Vec<ByteView> = routing_keys.iter().map(|k| ByteView::new(k)).collect();
    let message = MessageView {
        exchange: ByteView::EMPTY,
        routing_keys: keys.as_ptr(),
        routing_key_count: keys.len(),
        headers: ByteView::new(headers),
    };
    let mut ids = vec![0u64; 1];
    loop {
        let mut out = DestinationsOut {
            ids: ids.as_mut_ptr(),
            capacity: ids.len(),
            len: 0,
        };
        // SAFETY: `out.ids` holds `capacity` ids; `message` borrows keys and headers that
        // outlive the call.
        let (mut destinations, message) = unsafe {
            (
                Destinations::from_raw(&mut out),
                Message::from_view(&message),
            )
        };
        exchange.route(message, &mut destinations)?;
        if out.len <= ids.len() {
            ids.truncate(out.len);
            return Ok(ids);
        }
        ids.resize(out.len, 0);
    }
}
