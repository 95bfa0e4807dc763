//! The command line of `baton-key`.

use crate::{fingerprint, generate, load_certs, show};
use baton_core::error::{finish, parse_args, stdout_error, ExitStatus, EXIT_TRUE};
use baton_core::{Error, Result};
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Make and inspect Baton identities for mutual TLS.
///
/// `baton-key new ID --out DIR` writes DIR/ID.key (mode 0600) and a self-signed
/// DIR/ID.crt, and prints the line a server adds to its --keys file to admit ID. The
/// same pair is a client's identity (baton-query --key DIR/ID.key) and a server's own
/// (baton-serve --tls-cert DIR/ID.crt --tls-key DIR/ID.key).
#[derive(Parser, Debug)]
#[command(name = "baton-key", version)]
pub struct KeyCli {
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Make a key pair and a self-signed certificate; print the --keys line 'ID SHA256'
    New {
        /// The identity's name, as access files name it (key:ID)
        id: String,
        /// The directory to write ID.key and ID.crt in (created if missing, mode 0700)
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
        /// A DNS name or IP address the certificate is valid for (repeatable; default: ID),
        /// for clients that check names through a CA rather than pin the certificate
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
    },
    /// Print a certificate's SHA-256 fingerprint (what --keys and --pin hold)
    Show {
        /// A PEM certificate (ID.crt)
        file: PathBuf,
    },
}

pub fn baton_key(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    const BIN: &str = "baton-key";
    match parse_args::<KeyCli>(BIN, args) {
        Ok(cli) => finish(BIN, run(cli)),
        Err(code) => code,
    }
}

fn run(cli: KeyCli) -> Result<ExitStatus> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        KeyCommand::New {
            id,
            out: dir,
            names,
        } => {
            if !dir.exists() {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|e| Error::io("create directory", &dir, e))?;
            }
            let made = generate(&id, &dir, &names)?;
            writeln!(out, "{}", made.line).map_err(stdout_error)?;
        }
        KeyCommand::Show { file } => {
            let certs = load_certs(&file)?;
            writeln!(out, "{}", show(&fingerprint(certs[0].as_ref()))).map_err(stdout_error)?;
        }
    }
    Ok(EXIT_TRUE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        KeyCli::command().debug_assert();
    }
}
