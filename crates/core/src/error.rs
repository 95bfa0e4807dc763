//! Errors that know their exit code, and the funnel that turns a run into one.

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;

/// Exit status of a true answer or a success.
pub const EXIT_TRUE: u8 = 0;
/// Exit status of a false answer or no match.
pub const EXIT_FALSE: u8 = 1;
/// Exit status of any error: bad input, unreadable state, an unreachable peer.
pub const EXIT_ERROR: u8 = 2;

/// 0 when something was found (a match, a record), 1 when nothing was, as grep says it.
pub fn found(anything: bool) -> u8 {
    if anything {
        EXIT_TRUE
    } else {
        EXIT_FALSE
    }
}

/// An error with the message to print and the exit status it deserves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub message: String,
    pub code: u8,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with exit status 2.
    pub fn new(message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
            code: EXIT_ERROR,
        }
    }

    /// An error with a chosen exit status.
    pub fn with_code(message: impl Into<String>, code: u8) -> Error {
        Error {
            message: message.into(),
            code,
        }
    }

    /// An I/O error on a path, said the way a sysadmin can act on it.
    pub fn io(what: &str, path: &std::path::Path, err: io::Error) -> Error {
        Error::new(format!(
            "cannot {what} {}: {}",
            path.display(),
            io_reason(&err)
        ))
    }

    /// Prefix the message with more context.
    pub fn context(self, ctx: impl fmt::Display) -> Error {
        Error {
            message: format!("{ctx}: {}", self.message),
            code: self.code,
        }
    }
}

/// The OS reason without Rust's "(os error N)" suffix.
pub fn io_reason(err: &io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_lowercase(),
        None => text,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Error {
        Error::new(io_reason(&err))
    }
}

/// The only place a Baton binary decides its exit status: `Ok(code)` is passed through,
/// an error is printed as one line `BIN: message` on stderr. A closed stdout (a pipe into
/// `head`) is not an error.
pub fn finish(bin: &str, outcome: Result<u8>) -> ExitCode {
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(err) if err.message == BROKEN_PIPE => ExitCode::from(EXIT_TRUE),
        Err(err) => {
            let _ = writeln!(io::stderr().lock(), "{bin}: {}", err.message);
            ExitCode::from(err.code)
        }
    }
}

const BROKEN_PIPE: &str = "broken pipe";

/// Print `BIN: warning: message` on stderr (cron mails it), BIN being the running
/// binary's name. For what is likely a mistake but does not stop the answer.
pub fn warn(message: &str) {
    let bin = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "baton".to_string());
    let _ = writeln!(io::stderr().lock(), "{bin}: warning: {message}");
}

/// Parse command-line arguments with clap. Help and version go to stdout with exit 0; a
/// usage error becomes one line on stderr and exit 2, as every other error does.
pub fn parse_args<P: clap::Parser>(
    bin: &str,
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> std::result::Result<P, ExitCode> {
    P::try_parse_from(args).map_err(|err| {
        if !err.use_stderr() {
            let _ = err.print();
            return ExitCode::from(EXIT_TRUE);
        }
        let rendered = err.render().to_string();
        // The first paragraph says what is wrong; the usage and tips that follow are
        // what --help is for.
        let first: Vec<&str> = rendered
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .map(str::trim)
            .collect();
        let first = first.join(" ");
        let first = first.trim_start_matches("error: ");
        let _ = writeln!(io::stderr().lock(), "{bin}: {first} (see '{bin} --help')");
        ExitCode::from(EXIT_ERROR)
    })
}

/// Map a write error on stdout to the quiet broken-pipe case or a plain error.
pub fn stdout_error(err: io::Error) -> Error {
    if err.kind() == io::ErrorKind::BrokenPipe {
        Error::new(BROKEN_PIPE)
    } else {
        Error::new(format!(
            "cannot write to standard output: {}",
            io_reason(&err)
        ))
    }
}
