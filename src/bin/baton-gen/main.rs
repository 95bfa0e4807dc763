//! baton-gen: writes Baton's man pages and bash, zsh and fish completions.
//!
//! Everything a user can type comes from the clap definitions the binaries parse with,
//! so the pages and completions cannot drift from `--help`; the long text (DESCRIPTION,
//! EXIT STATUS, FILES, EXAMPLES...) comes from the binary's page in docs/. Run by
//! `make install` and `make deb`; not installed itself.
//!
//! Usage: `baton-gen OUTDIR [DOCS_DIR]` writes `OUTDIR/man/NAME.1`,
//! `OUTDIR/bash/NAME`, `OUTDIR/zsh/_NAME` and `OUTDIR/fish/NAME.fish`.

mod markdown;

use clap::{Arg, ArgAction, Command, CommandFactory};
use clap_complete::Shell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Every installed command, as clap knows it.
pub fn commands() -> Vec<Command> {
    vec![
        baton_classes::cli::ClassesCli::command(),
        baton_classes::cli::IfCli::command(),
        baton_store::cli::SignalCli::command(),
        baton_launch::cli::RunCli::command(),
        baton_serve::cli::ServeCli::command(),
        baton_query::cli::QueryCli::command(),
        baton_promise::cli::PromiseCli::command(),
        baton_identity::cli::KeyCli::command(),
        chain_command(),
    ]
}

/// `bin/baton-chain` is POSIX sh, so clap never parses its arguments: this is its command
/// line as its `--help` prints it (a test holds the two together).
pub fn chain_command() -> Command {
    let value = |name: &'static str, value_name: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .value_name(value_name)
            .help(help)
            .action(ArgAction::Set)
    };
    Command::new("baton-chain")
        .version(env!("CARGO_PKG_VERSION"))
        .about("The seed's job_chain(time): one command both hosts' crontabs call")
        .arg(value("time", "EXPR", "Class expression saying when the chain is primed (e.g. Hr16.Min10_15)").required(true))
        .arg(value("upstream", "HOST", "The host that runs --up and raises --signal (a peers file in BATON_PEERS says where it listens)").required(true))
        .arg(value("downstream", "HOST", "The host that follows with --down once it sees --signal").required(true))
        .arg(value("signal", "NAME", "The signal passed between them").required(true))
        .arg(value("up", "CMD", "The upstream job (run with sh -c)").required(true))
        .arg(value("down", "CMD", "The downstream follow-up (run with sh -c)").required(true))
        .arg(value("ifelapsed", "DUR", "Do not repeat either job within DUR").default_value("5m"))
        .arg(value("ttl", "DUR", "How long the signal stays live").default_value("10m"))
        .arg(value("wait", "DUR", "Downstream: wait up to DUR for the signal instead of asking once"))
}

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    // An option is never an output directory: `--help` must not create `./--help`.
    match args.first().and_then(|a| a.to_str()) {
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!("baton-gen {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    if let Some(opt) = args.iter().find(|a| a.to_string_lossy().starts_with('-')) {
        eprintln!("baton-gen: unknown option {}; {USAGE}", opt.display());
        return ExitCode::from(2);
    }
    let (out, docs) = match args.as_slice() {
        [out] => (out.clone(), default_docs()),
        [out, docs] => (out.clone(), docs.clone()),
        _ => {
            eprintln!("baton-gen: {USAGE}");
            return ExitCode::from(2);
        }
    };
    match generate(&out, &docs) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("baton-gen: {e}");
            ExitCode::from(2)
        }
    }
}

const USAGE: &str =
    "usage: baton-gen OUTDIR [DOCS_DIR] (writes man pages and completions under OUTDIR)";

fn default_docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs")
}

/// Write every man page and completion under `out`.
pub fn generate(out: &Path, docs: &Path) -> Result<(), String> {
    for dir in ["man", "bash", "zsh", "fish"] {
        std::fs::create_dir_all(out.join(dir))
            .map_err(|e| format!("cannot create {}: {e}", out.join(dir).display()))?;
    }
    for cmd in commands() {
        let name = cmd.get_name().to_string();
        let page = docs.join(format!("{name}.md"));
        let text = std::fs::read_to_string(&page)
            .map_err(|e| format!("cannot read {}: {e}", page.display()))?;
        write(
            &out.join(format!("man/{name}.1")),
            &man_page(cmd.clone(), &text)?,
        )?;
        // `baton-signal raise` and its siblings: the pages its SUBCOMMANDS section names.
        let mut built = cmd.clone().disable_help_subcommand(true);
        built.build();
        for sub in built.get_subcommands().filter(|s| !s.is_hide_set()) {
            let man = clap_mangen::Man::new(sub.clone()).date("");
            let mut page = Vec::new();
            man.render(&mut page).map_err(|e| e.to_string())?;
            write(&out.join(format!("man/{}", man.get_filename())), &page)?;
        }
        for (shell, file) in [
            (Shell::Bash, format!("bash/{name}")),
            (Shell::Zsh, format!("zsh/_{name}")),
            (Shell::Fish, format!("fish/{name}.fish")),
        ] {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), &name, &mut buf);
            write(&out.join(file), &buf)?;
        }
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The sections clap writes; the docs page's own versions of them are left out.
const FROM_CLAP: [&str; 3] = ["NAME", "SYNOPSIS", "OPTIONS"];

/// One man page: NAME, SYNOPSIS and OPTIONS (and COMMANDS) from clap, DESCRIPTION and
/// every other section from the docs page (`docs_md`), VERSION last.
pub fn man_page(cmd: Command, docs_md: &str) -> Result<Vec<u8>, String> {
    let cmd = cmd.disable_help_subcommand(true);
    let man = clap_mangen::Man::new(cmd.clone()).date("");
    let sections = markdown::sections(docs_md);
    let mut out: Vec<u8> = Vec::new();
    let io = |e: std::io::Error| e.to_string();
    // `'\" t` asks man to run the page through tbl, for the docs' tables.
    out.extend_from_slice(b"'\\\" t\n");
    man.render_title(&mut out).map_err(io)?;
    man.render_name_section(&mut out).map_err(io)?;
    man.render_synopsis_section(&mut out).map_err(io)?;
    match sections.iter().find(|s| s.title == "DESCRIPTION") {
        Some(s) => out.extend_from_slice(markdown::section_roff(s).as_bytes()),
        None => man.render_description_section(&mut out).map_err(io)?,
    }
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out).map_err(io)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut out).map_err(io)?;
    }
    for s in &sections {
        if s.title != "DESCRIPTION" && !FROM_CLAP.contains(&s.title.as_str()) {
            out.extend_from_slice(markdown::section_roff(s).as_bytes());
        }
    }
    man.render_version_section(&mut out).map_err(io)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_line_is_well_formed() {
        for cmd in commands() {
            cmd.debug_assert();
        }
    }

    fn page(name: &str) -> String {
        let cmd = commands()
            .into_iter()
            .find(|c| c.get_name() == name)
            .unwrap();
        let docs = std::fs::read_to_string(default_docs().join(format!("{name}.md"))).unwrap();
        String::from_utf8(man_page(cmd, &docs).unwrap()).unwrap()
    }

    #[test]
    fn pages_take_options_from_clap_and_the_rest_from_docs() {
        let run = page("baton-run");
        for want in [
            ".TH baton-run 1",
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH DESCRIPTION",
            ".SH OPTIONS",
            ".SH \"EXIT STATUS\"",
            ".SH EXAMPLES",
            ".SH VERSION",
            // every long option clap knows, as a reader would search for it
            "\\-\\-on\\-repaired",
            "\\-\\-expireafter",
            // long text from docs/baton-run.md
            "Single instance.",
            ".TS",
        ] {
            assert!(run.contains(want), "baton-run.1 lacks {want:?}:\n{run}");
        }
        // The docs' own SYNOPSIS is not repeated: clap's is the one.
        assert_eq!(run.matches(".SH SYNOPSIS").count(), 1);
        let signal = page("baton-signal");
        assert!(signal.contains(".SH SUBCOMMANDS"), "{signal}");
    }

    #[test]
    fn every_option_of_every_command_is_in_its_page() {
        for cmd in commands() {
            let page = page(cmd.get_name());
            for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(long) = arg.get_long() {
                    let roff = format!("\\-\\-{}", long.replace('-', "\\-"));
                    assert!(page.contains(&roff), "{} lacks --{long}", cmd.get_name());
                }
            }
        }
    }

    /// The clap picture of baton-chain holds exactly the options its script accepts.
    #[test]
    fn baton_chain_command_matches_its_script() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bin/baton-chain");
        let out = std::process::Command::new("sh")
            .arg(&script)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success());
        let help = String::from_utf8(out.stdout).unwrap();
        let mut in_script: Vec<String> = help
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(|w| w.trim_start_matches("--").to_string())
            .filter(|w| w != "help" && w != "version")
            .collect();
        in_script.sort();
        in_script.dedup();
        let mut in_clap: Vec<String> = chain_command()
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect();
        in_clap.sort();
        assert_eq!(in_script, in_clap, "{help}");
    }

    #[test]
    fn generates_every_file() {
        let out = std::env::temp_dir().join(format!("baton-gen-test-{}", std::process::id()));
        generate(&out, &default_docs()).unwrap();
        for name in commands().iter().map(|c| c.get_name().to_string()) {
            for file in [
                format!("man/{name}.1"),
                format!("bash/{name}"),
                format!("zsh/_{name}"),
                format!("fish/{name}.fish"),
            ] {
                let len = std::fs::metadata(out.join(&file)).map(|m| m.len());
                assert!(len.is_ok_and(|n| n > 0), "{file} missing or empty");
            }
        }
        let raise = std::fs::read_to_string(out.join("man/baton-signal-raise.1")).unwrap();
        assert!(raise.contains("\\-\\-policy"), "{raise}");
        let bash = std::fs::read_to_string(out.join("bash/baton-run")).unwrap();
        assert!(bash.contains("--on-repaired"), "{bash}");
        std::fs::remove_dir_all(&out).unwrap();
    }
}
