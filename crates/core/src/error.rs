//! Errors that know their exit code, and the funnel that turns a run into one.

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;

/// A Baton binary's exit status. Answers follow `test` and `grep` (0 true, 1 false, 2
/// error); `baton-run` passes its job's status on as `timeout(1)` does and gives its own
/// outcomes fixed, documented values from `sysexits.h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExitStatus(u8);

impl ExitStatus {
    /// A true answer, a match, a success.
    pub const TRUE: ExitStatus = ExitStatus(0);
    /// A false answer, no match.
    pub const FALSE: ExitStatus = ExitStatus(1);
    /// Any error: bad input, unreadable state, a peer that could not be asked.
    pub const ERROR: ExitStatus = ExitStatus(2);
    /// `baton-run`: another run holds the job's lock (`EX_TEMPFAIL`, try again later).
    pub const BUSY: ExitStatus = ExitStatus(75);
    /// `baton-run`: a rule (`--ifelapsed`, `--once-per`) skipped this tick.
    pub const SKIPPED: ExitStatus = ExitStatus(76);
    /// `baton-run`: the job ran but its outcome could not be recorded (`EX_CANTCREAT`).
    pub const UNRECORDED: ExitStatus = ExitStatus(73);
    /// The job outlived `--timeout` and was killed, as `timeout(1)` says it.
    pub const TIMED_OUT: ExitStatus = ExitStatus(124);
    /// The command exists but could not be run.
    pub const CANNOT_EXECUTE: ExitStatus = ExitStatus(126);
    /// The command was not found.
    pub const NOT_FOUND: ExitStatus = ExitStatus(127);

    /// A child's own exit status, passed on unchanged (low 8 bits, as the shell sees it).
    pub fn passed_on(code: i32) -> ExitStatus {
        ExitStatus((code & 0xff) as u8)
    }

    /// A child killed by signal `n`: 128 + n, as the shell and `timeout(1)` say it.
    pub fn signalled(n: i32) -> ExitStatus {
        ExitStatus((128 + n).clamp(0, 255) as u8)
    }

    /// 0 when something was found (a match, a record), 1 when nothing was, as grep says it.
    pub fn found(anything: bool) -> ExitStatus {
        if anything {
            ExitStatus::TRUE
        } else {
            ExitStatus::FALSE
        }
    }

    pub fn code(self) -> u8 {
        self.0
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> ExitCode {
        ExitCode::from(status.0)
    }
}

/// Exit status of a true answer or a success.
pub const EXIT_TRUE: ExitStatus = ExitStatus::TRUE;
/// Exit status of a false answer or no match.
pub const EXIT_FALSE: ExitStatus = ExitStatus::FALSE;
/// Exit status of any error.
pub const EXIT_ERROR: ExitStatus = ExitStatus::ERROR;

/// 0 when something was found (a match, a record), 1 when nothing was, as grep says it.
pub fn found(anything: bool) -> ExitStatus {
    ExitStatus::found(anything)
}

/// What kind of failure an [`Error`] is: each kind knows its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input: a flag, an expression, a time, a file's contents, a peer's answer.
    Invalid,
    /// The system refused: a file, a directory, a lock, a process.
    Io,
    /// A store or a peer could not be asked.
    Unreachable,
    /// Standard output was closed (a pipe into `head`): not an error, the binary stops
    /// quietly with its answer so far.
    BrokenPipe,
    /// A `baton-run` job ran, but its outcome could not be recorded.
    Unrecorded,
}

impl ErrorKind {
    /// The exit status an error of this kind ends a binary with.
    pub fn exit_status(self) -> ExitStatus {
        match self {
            ErrorKind::Invalid | ErrorKind::Io | ErrorKind::Unreachable => ExitStatus::ERROR,
            ErrorKind::BrokenPipe => ExitStatus::TRUE,
            ErrorKind::Unrecorded => ExitStatus::UNRECORDED,
        }
    }
}

/// An error: its kind (which decides the exit status) and the one line to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of kind [`ErrorKind::Invalid`].
    pub fn new(message: impl Into<String>) -> Error {
        Error::of(ErrorKind::Invalid, message)
    }

    /// An error of a chosen kind.
    pub fn of(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// The exit status this error ends a binary with.
    pub fn exit_status(&self) -> ExitStatus {
        self.kind.exit_status()
    }

    /// An I/O error on a path, said the way a sysadmin can act on it.
    pub fn io(what: &str, path: &std::path::Path, err: io::Error) -> Error {
        Error::of(
            ErrorKind::Io,
            format!("cannot {what} {}: {}", path.display(), io_reason(&err)),
        )
    }

    /// The same error, its message prefixed with `ctx: `.
    pub fn context(self, ctx: impl fmt::Display) -> Error {
        Error {
            message: format!("{ctx}: {}", self.message),
            kind: self.kind,
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
        let kind = if err.kind() == io::ErrorKind::BrokenPipe {
            ErrorKind::BrokenPipe
        } else {
            ErrorKind::Io
        };
        Error::of(kind, io_reason(&err))
    }
}

/// The only place a Baton binary decides its exit status: `Ok(status)` is passed
/// through, an error is printed as one line `BIN: message` on stderr and ends with its
/// kind's status. A closed stdout (a pipe into `head`) is not an error.
pub fn finish(bin: &str, outcome: Result<ExitStatus>) -> ExitCode {
    match outcome {
        Ok(status) => status.into(),
        Err(err) if err.kind == ErrorKind::BrokenPipe => err.exit_status().into(),
        Err(err) => {
            let _ = writeln!(io::stderr().lock(), "{bin}: {}", err.message);
            err.exit_status().into()
        }
    }
}

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
            return EXIT_TRUE.into();
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
        EXIT_ERROR.into()
    })
}

/// Map a write error on stdout to the quiet broken-pipe case or a plain error.
pub fn stdout_error(err: io::Error) -> Error {
    if err.kind() == io::ErrorKind::BrokenPipe {
        Error::of(ErrorKind::BrokenPipe, "broken pipe")
    } else {
        Error::of(
            ErrorKind::Io,
            format!("cannot write to standard output: {}", io_reason(&err)),
        )
    }
}
