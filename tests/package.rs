//! What a sysadmin meets around the binaries: versions, the package, the diagnostics.

use crate::util::{baton, Host};

const BINS: [&str; 6] = [
    "baton-classes",
    "baton-if",
    "baton-signal",
    "baton-run",
    "baton-serve",
    "baton-query",
];

#[test]
fn every_command_says_its_version() {
    let version = env!("CARGO_PKG_VERSION");
    for bin in BINS {
        baton(bin)
            .arg("--version")
            .run()
            .status(0)
            .stdout_is(&format!("{bin} {version}\n"));
    }
    Host::new("h")
        .sh("2012-01-24T16:10:00Z", "baton-chain --version")
        .run()
        .status(0)
        .stdout_is(&format!("baton-chain {version}\n"));
}

#[test]
fn usage_errors_quote_what_the_user_typed() {
    baton("baton-if")
        .args(["--only", "a && b"])
        .run()
        .status(2)
        .says("baton-if", "'&&' is not an operator");
    let help = baton("baton-query").arg("--help").run().status(0).stdout();
    let usage: Vec<&str> = help.lines().filter(|l| l.starts_with("Usage:")).collect();
    assert_eq!(
        usage,
        ["Usage: baton-query [OPTIONS] <HOST[:PORT]>... <REGEX>"],
        "{help}"
    );
}
