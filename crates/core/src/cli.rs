//! What every binary agrees on about where, as whom and when it acts: the state dir, the
//! host identity and the clock, resolved once at the top of `main`.

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::name::canonify;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// Options shared by the binaries that touch this host's state.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SiteArgs {
    /// Directory holding signals, locks, run history and logs
    /// [default: /var/lib/baton for root, else $XDG_STATE_HOME/baton]
    #[arg(long, value_name = "DIR", env = "BATON_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// This host's name, replacing the system host name (lets one machine play several hosts)
    #[arg(long, value_name = "NAME", env = "BATON_HOST")]
    pub host: Option<String>,

    /// Act as if it were TIME: RFC 3339, 'YYYY-MM-DD HH:MM[:SS]' in TZ, or @EPOCH
    /// [default: $BATON_NOW, else the system clock]
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,

    /// Keep signals in etcd instead of the state dir: etcd://HOST:PORT[,HOST:PORT...]
    /// (etcds:// for TLS; USER:PASSWORD@ before the hosts for etcd auth)
    #[arg(long, value_name = "URL", env = "BATON_STORE")]
    pub store: Option<String>,
}

/// Who, where and when a binary acts: resolved from [`SiteArgs`] and the environment.
#[derive(Debug, Clone)]
pub struct Site {
    pub state_dir: PathBuf,
    /// The host name as given (it may be a FQDN).
    pub host: String,
    pub clock: Clock,
    /// Where signals live: `None` for the state dir, else an etcd URL.
    pub store: Option<String>,
}

impl SiteArgs {
    pub fn resolve(&self) -> Result<Site> {
        let clock = Clock::resolve(self.at.as_deref())?;
        let host = match &self.host {
            Some(h) => check_host(h)?,
            None => system_host_name(),
        };
        let state_dir = match &self.state_dir {
            Some(dir) if dir.as_os_str().is_empty() => {
                return Err(Error::new("--state-dir is empty"))
            }
            Some(dir) => dir.clone(),
            None => default_state_dir()?,
        };
        Ok(Site {
            state_dir,
            host,
            clock,
            store: self.store.clone().filter(|s| !s.is_empty()),
        })
    }
}

impl Site {
    /// Warn (once per call) when the state dir does not exist: a reader then sees no
    /// signal, and the usual cause is a different state dir from the writer's.
    pub fn warn_if_no_state_dir(&self) {
        if self.store.is_none() && !self.state_dir.exists() {
            crate::error::warn(&format!(
                "state dir {} does not exist, so no signal is live: is it the one baton-run and baton-signal write (--state-dir, BATON_STATE_DIR; root's default is /var/lib/baton, other users' $XDG_STATE_HOME/baton)?",
                self.state_dir.display()
            ));
        }
    }

    /// The environment a job started by `baton-run` gets, so that its own Baton calls act
    /// as the same host, on the same state dir, store and clock: `BATON_HOST`,
    /// `BATON_STATE_DIR`, `BATON_STORE` and `BATON_NOW` (the clock file, or the fixed
    /// instant; `None`, to be removed, for the system clock and for no store).
    pub fn job_env(&self) -> Vec<(&'static str, Option<OsString>)> {
        let now = match &self.clock {
            Clock::System => None,
            Clock::Fixed(t) => Some(OsString::from(crate::clock::format_time(*t))),
            Clock::File(path) => Some(path.clone().into_os_string()),
        };
        vec![
            ("BATON_HOST", Some(OsString::from(&self.host))),
            (
                "BATON_STATE_DIR",
                Some(self.state_dir.clone().into_os_string()),
            ),
            ("BATON_STORE", self.store.as_ref().map(OsString::from)),
            (crate::clock::ENV_NOW, now),
        ]
    }

    /// The host name as a class: `host-2.example.org` is `host_2_example_org`.
    pub fn host_class(&self) -> String {
        canonify(&self.host)
    }
}

fn check_host(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.len() > 253 {
        return Err(Error::new(
            "invalid --host: give a host name of 1 to 253 characters",
        ));
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(Error::new(format!(
            "invalid --host '{name}': no spaces or slashes"
        )));
    }
    Ok(name.to_string())
}

/// The kernel's host name, as `hostname` prints it.
pub fn system_host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn default_state_dir() -> Result<PathBuf> {
    let root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    if root {
        return Ok(PathBuf::from("/var/lib/baton"));
    }
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(state) = var("XDG_STATE_HOME") {
        return Ok(state.join("baton"));
    }
    if let Some(home) = var("HOME") {
        return Ok(home.join(".local/state/baton"));
    }
    Err(Error::new(
        "no state directory: give --state-dir or set BATON_STATE_DIR",
    ))
}
