//! Progress of a long-running command on stderr, so stdout keeps only the answer.
//!
//! On a terminal each update overwrites the last (`\r`), and the line is ended when the
//! command finishes; piped into a log, each update is a line of its own, so the log shows
//! how far the command got. A disabled reporter (`--no-progress`, `-q`, `-s`) prints
//! nothing.

use std::io::{self, IsTerminal, Write};

/// Where progress goes and how.
pub struct Progress<W: Write> {
    out: Option<W>,
    /// Overwrite in place (a terminal) rather than one line per update.
    in_place: bool,
    /// A `\r` line is on screen and not yet ended.
    open: bool,
    /// The length of that line, to blank a longer one it replaces.
    width: usize,
}

impl Progress<io::Stderr> {
    /// Progress on stderr, in place when stderr is a terminal; nothing when `enabled` is
    /// false.
    pub fn stderr(enabled: bool) -> Progress<io::Stderr> {
        let stderr = io::stderr();
        let in_place = stderr.is_terminal();
        Progress::new(enabled.then_some(stderr), in_place)
    }
}

impl<W: Write> Progress<W> {
    /// Progress into `out` (`None`: disabled).
    pub fn new(out: Option<W>, in_place: bool) -> Progress<W> {
        Progress {
            out,
            in_place,
            open: false,
            width: 0,
        }
    }

    /// Shows `line` as the current state. Progress is a courtesy: a write that fails (a
    /// closed stderr) does not fail the command.
    pub fn update(&mut self, line: &str) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        if self.in_place {
            let pad = self.width.saturating_sub(line.len());
            let _ = write!(out, "\r{line}{:pad$}", "");
            self.width = line.len();
            self.open = true;
        } else {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }

    /// Ends an in-place line, so what is printed next starts on a line of its own.
    pub fn finish(&mut self) {
        if let (Some(out), true) = (self.out.as_mut(), self.open) {
            let _ = writeln!(out);
            let _ = out.flush();
        }
        self.open = false;
        self.width = 0;
    }

    /// What was written (for tests of a reporter over a buffer).
    #[cfg(test)]
    pub fn into_inner(self) -> Option<W> {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(in_place: bool) -> String {
        let mut p = Progress::new(Some(Vec::new()), in_place);
        p.update("imported 500/1200 objects (queues)");
        p.update("imported 1200/1200 objects (bindings)");
        p.update("done");
        p.finish();
        String::from_utf8(p.into_inner().unwrap()).unwrap()
    }

    #[test]
    fn a_log_gets_a_line_per_update() {
        assert_eq!(
            run(false),
            "imported 500/1200 objects (queues)\nimported 1200/1200 objects (bindings)\ndone\n"
        );
    }

    #[test]
    fn a_terminal_gets_one_line_overwritten_and_blanked() {
        let text = run(true);
        assert_eq!(
            text,
            format!(
                "\rimported 500/1200 objects (queues)\rimported 1200/1200 objects (bindings)\
                 \rdone{}\n",
                " ".repeat("imported 1200/1200 objects (bindings)".len() - 4)
            )
        );
    }

    #[test]
    fn a_disabled_reporter_prints_nothing() {
        let mut p: Progress<Vec<u8>> = Progress::new(None, true);
        p.update("x");
        p.finish();
        assert!(p.into_inner().is_none());
    }
}
