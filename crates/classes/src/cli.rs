//! The command lines of `baton-classes` and `baton-if`.

use crate::{ClassLookup, ClassSet, Expr, Source};
use baton_core::cli::SiteArgs;
use baton_core::error::{finish, found, parse_args, stdout_error, ExitStatus, EXIT_TRUE};
use baton_core::{name, Error, Result};
use baton_store::Context;
use clap::Parser;
use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::process::ExitCode;

/// Print this host's classes: time and host classes and live signals, one per line, sorted.
#[derive(Parser, Debug)]
#[command(name = "baton-classes", version)]
pub struct ClassesCli {
    /// Print a JSON array of {"name", "source"} objects instead of lines
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub site: SiteArgs,
}

/// Exit 0 if the class expression EXPR holds on this host now, 1 if not, 2 on error.
///
/// EXPR is CFEngine's: `!` (not) binds tightest, then `.` or `&` (and), then `|` or `||`
/// (or), with parentheses: `host1.Hr16.Min45_50`, `(h2|h3).hostX_did_my_job`.
#[derive(Parser, Debug)]
#[command(name = "baton-if", version)]
pub struct IfCli {
    /// Define CLASS as well (repeatable; commas separate several)
    #[arg(short = 'D', long = "define", value_name = "CLASS")]
    pub define: Vec<String>,

    /// Also define the classes read from standard input, one per line (e.g. from baton-query)
    #[arg(long)]
    pub stdin: bool,

    /// Use no hard classes and no signals: only -D and --stdin (and `any`)
    #[arg(long)]
    pub only: bool,

    /// Print each operand's value and where it came from, then the result
    #[arg(long)]
    pub explain: bool,

    #[command(flatten)]
    pub site: SiteArgs,

    /// The class expression
    #[arg(value_name = "EXPR")]
    pub expr: String,
}

/// `baton-classes`.
pub fn baton_classes(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    const BIN: &str = "baton-classes";
    match parse_args::<ClassesCli>(BIN, args) {
        Ok(cli) => finish(BIN, run_classes(&cli)),
        Err(code) => code,
    }
}

/// `baton-if`.
pub fn baton_if(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    const BIN: &str = "baton-if";
    match parse_args::<IfCli>(BIN, args) {
        Ok(cli) => finish(BIN, run_if(&cli, &mut std::io::stdin().lock())),
        Err(code) => code,
    }
}

fn run_classes(cli: &ClassesCli) -> Result<ExitStatus> {
    let ctx = Context::resolve(&cli.site)?;
    let mut set = ClassSet::hard(&ctx.site.host, ctx.now);
    ctx.site.warn_if_no_state_dir();
    set.extend(
        baton_store::live_class_names(&ctx, ctx.now)?,
        Source::Signal,
    );
    let mut out = std::io::stdout().lock();
    if cli.json {
        let items: Vec<_> = set
            .iter()
            .map(|(n, s)| serde_json::json!({"name": n, "source": s.as_str()}))
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(items)).map_err(stdout_error)?;
    } else {
        for (name, _) in set.iter() {
            writeln!(out, "{name}").map_err(stdout_error)?;
        }
    }
    out.flush().map_err(stdout_error)?;
    Ok(EXIT_TRUE)
}

/// The most standard input `--stdin` reads, so a runaway producer cannot exhaust memory.
const MAX_STDIN: u64 = 16 * 1024 * 1024;

fn run_if(cli: &IfCli, stdin: &mut dyn BufRead) -> Result<ExitStatus> {
    // Parse before any I/O: a typo is reported even when the classes cannot be read.
    let expr = Expr::parse(&cli.expr)?;
    let ctx;
    let mut set = if cli.only {
        ClassLookup::only()
    } else {
        ctx = Context::resolve(&cli.site)?;
        let ctx = &ctx;
        let warned = std::cell::Cell::new(false);
        // Signals are read per name the expression needs, from the store opened once.
        ClassLookup::new(
            &ctx.site.host,
            ctx.now,
            Box::new(move |name| {
                // Only when a signal is asked for: `baton-if host1.Hr16` reads no file.
                if !warned.replace(true) {
                    ctx.site.warn_if_no_state_dir();
                }
                baton_store::is_live_signal(ctx, ctx.now, name)
            }),
        )
    };
    let mut defined = Vec::new();
    for item in cli.define.iter().flat_map(|d| d.split(',')) {
        let item = item.trim();
        name::validate(item).map_err(|e| e.context("-D"))?;
        defined.push(item.to_string());
    }
    set.extend(defined, Source::Defined);
    if cli.stdin {
        set.extend(read_class_lines(stdin)?, Source::Stdin);
    }
    let holds = set.eval(&expr)?;
    if cli.explain {
        let mut out = std::io::stdout().lock();
        let width = expr.operands().iter().map(|o| o.len()).max().unwrap_or(0);
        for op in expr.operands() {
            let source = set.source(op)?;
            let value = source.is_some();
            let from = source.map(Source::as_str).unwrap_or("undefined");
            writeln!(out, "{op:<width$}  {value:<5}  {from}").map_err(stdout_error)?;
        }
        writeln!(out, "{expr} => {holds}").map_err(stdout_error)?;
    }
    Ok(found(holds))
}

/// Class names, one per line; blank lines are skipped, anything else must be a name.
fn read_class_lines(input: &mut dyn BufRead) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let mut limited = std::io::Read::take(input, MAX_STDIN + 1);
    let mut line = String::new();
    let mut number = 0;
    let mut total = 0u64;
    loop {
        line.clear();
        let n = limited
            .read_line(&mut line)
            .map_err(|e| Error::new(format!("cannot read standard input: {e}")))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > MAX_STDIN {
            return Err(Error::new("standard input larger than 16 MiB"));
        }
        number += 1;
        let item = line.trim();
        if item.is_empty() {
            continue;
        }
        name::validate(item).map_err(|e| e.context(format!("standard input line {number}")))?;
        names.push(item.to_string());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clis_are_well_formed() {
        ClassesCli::command().debug_assert();
        IfCli::command().debug_assert();
    }

    #[test]
    fn stdin_lines() {
        let mut input: &[u8] = b"a\n\n  hostX_did_my_job  \n";
        assert_eq!(
            read_class_lines(&mut input).unwrap(),
            vec!["a", "hostX_did_my_job"]
        );
        let mut bad: &[u8] = b"a\nnot a class\n";
        let err = read_class_lines(&mut bad).unwrap_err().message;
        assert!(err.starts_with("standard input line 2:"), "{err}");
    }
}
