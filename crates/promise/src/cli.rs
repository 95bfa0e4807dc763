//! The command line of `baton-promise`: no options beyond `--help` and `--version`;
//! cf-agent starts it and speaks the module protocol on stdin and stdout.

use baton_core::error::{finish, parse_args, ExitStatus, EXIT_TRUE};
use baton_core::{Error, Result};
use clap::Parser;
use std::ffi::OsString;
use std::process::ExitCode;

/// A CFEngine promise module giving policy the promise types baton_signal (raise or clear
/// a signal of this host; kept while it is live) and baton_query (define the classes
/// baton-query would print; not kept when a host cannot be asked).
///
/// cf-agent runs it: declare `promise agent baton_signal { path => "/usr/local/bin/baton-promise"; }`
/// (and the same for baton_query). A promise's attributes are the binary's options, '_'
/// for '-'.
#[derive(Parser, Debug)]
#[command(name = "baton-promise", version)]
pub struct PromiseCli {}

pub fn baton_promise(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    const BIN: &str = "baton-promise";
    match parse_args::<PromiseCli>(BIN, args) {
        Ok(_) => finish(BIN, run()),
        Err(code) => code,
    }
}

fn run() -> Result<ExitStatus> {
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    crate::serve(stdin, stdout).map_err(|e| {
        Error::new(format!(
            "{}: baton-promise speaks CFEngine's promise module protocol, for cf-agent",
            baton_core::error::io_reason(&e)
        ))
    })?;
    Ok(EXIT_TRUE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        PromiseCli::command().debug_assert();
    }
}
