//! Just enough of Erlang's `io_lib:format("~p")` to reproduce RabbitMQ's error texts, which
//! print Erlang terms such as `{value_negative,-10}` or `{leftover_string,"x"}`.
//!
//! Rules reproduced (checked with `erl` on OTP 25, RabbitMQ 3.10.8's runtime): a string is
//! quoted when every byte is printable Latin-1 (32–126, 160–255, or one of `\b \t \n \v \f
//! \r \e`, escaped) and printed as `[1,2]` otherwise; a term that does not end at least two
//! columns before the line length is broken after a 2-tuple's first element, the second
//! indented to one past the `{`. Longer terms (lists wrapping over several lines) are not
//! reproduced; RabbitMQ's 255-byte reply-text cut usually hides them.

/// An Erlang term of the shapes RabbitMQ's texts use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Term {
    Atom(&'static str),
    Int(i128),
    /// A charlist (`binary_to_list` of bytes, or a formatted message).
    Str(Vec<u8>),
    Tuple(Box<Term>, Box<Term>),
}

impl Term {
    pub fn tuple(a: Term, b: Term) -> Term {
        Term::Tuple(Box::new(a), Box::new(b))
    }

    fn flat(&self, out: &mut Vec<u8>) {
        match self {
            Term::Atom(a) => out.extend_from_slice(a.as_bytes()),
            Term::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Term::Str(s) if s.iter().all(|&c| printable(c)) => {
                out.push(b'"');
                for &c in s {
                    match c {
                        b'"' => out.extend_from_slice(b"\\\""),
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        0x0b => out.extend_from_slice(b"\\v"),
                        0x08 => out.extend_from_slice(b"\\b"),
                        0x0c => out.extend_from_slice(b"\\f"),
                        0x1b => out.extend_from_slice(b"\\e"),
                        _ => out.push(c),
                    }
                }
                out.push(b'"');
            }
            Term::Str(s) => {
                out.push(b'[');
                for (i, c) in s.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(c.to_string().as_bytes());
                }
                out.push(b']');
            }
            Term::Tuple(a, b) => {
                out.push(b'{');
                a.flat(out);
                out.push(b',');
                b.flat(out);
                out.push(b'}');
            }
        }
    }

    /// Appends `~Lp` of this term to `out`, whose last line so far is the current column.
    pub fn pretty(&self, out: &mut Vec<u8>, line_length: usize) {
        let col = out.len() - out.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
        let mut flat = Vec::new();
        self.flat(&mut flat);
        match self {
            Term::Tuple(a, b) if col + flat.len() > line_length.saturating_sub(2) => {
                out.push(b'{');
                a.flat(out);
                out.extend_from_slice(b",\n");
                out.resize(out.len() + col + 1, b' ');
                b.flat(out);
                out.push(b'}');
            }
            _ => out.extend_from_slice(&flat),
        }
    }
}

fn printable(c: u8) -> bool {
    matches!(c, 32..=126 | 160..=255 | 8..=13 | 27)
}
