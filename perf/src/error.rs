//! The one error type of the tool: a sentence for a human, built up with context as it
//! travels outwards. Nothing here is handled programmatically — every failure ends the run
//! with the message printed and a non-zero exit code — so a string is all it needs to be.

use std::fmt;

/// Why the run could not go on, phrased for the person who started it.
#[derive(Debug)]
pub struct Failure(String);

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Prefixes a lower-level error (lapin's, usually) with what we were doing when it happened.
pub trait Context<T> {
    fn context(self, doing: impl fmt::Display) -> Result<T, Failure>;
}

impl<T, E: fmt::Display> Context<T> for Result<T, E> {
    fn context(self, doing: impl fmt::Display) -> Result<T, Failure> {
        self.map_err(|error| Failure(format!("{doing}: {error}")))
    }
}
