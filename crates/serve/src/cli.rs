//! The command line of `baton-serve`.

use crate::http::{default_per_peer, tls_config, Limits};
use crate::relay::PeerView;
use crate::serve::{ServeConfig, Server};
use baton_core::cli::SiteArgs;
use baton_core::error::{finish, parse_args, stdout_error, ExitStatus, EXIT_TRUE};
use baton_core::{Duration, Error, Result};
use baton_identity::{Identity, KeyRing};
use baton_query::client::Peers;
use baton_query::tls;
use baton_query::Client;
use clap::Parser;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Where `baton-serve` listens unless told: every IPv4 address, on the port clients
/// assume when a host is given without one.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7401";

/// Serve this host's live signals to admitted peers over HTTP(S).
///
/// GET /v1/signals?match=REGEX answers with the live signals whose whole name matches
/// REGEX and that the access file admits the peer to. The access file is re-read when it
/// changes and on SIGHUP; an invalid one is refused and the previous rules stay.
#[derive(Parser, Debug)]
#[command(name = "baton-serve", version)]
pub struct ServeCli {
    /// Address and port to listen on (port 0 picks a free one; the address is printed)
    #[arg(long, value_name = "ADDR:PORT", env = "BATON_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: String,

    /// The access rules: which peers may see which signals
    #[arg(long, value_name = "FILE", env = "BATON_ACCESS")]
    pub access: PathBuf,

    /// The client identities this server admits (key:ID in the access file), one
    /// 'ID SHA256' line each, as baton-key new prints them. Needs --tls-cert
    #[arg(long, value_name = "FILE", env = "BATON_KEYS", requires = "tls_cert")]
    pub keys: Option<PathBuf>,

    /// Serve HTTPS with this PEM certificate (chain): this server's identity, e.g. the
    /// ID.crt baton-key new writes
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert (mode 0600: refused if others may read it)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Open connections at once; past this, new ones get 503
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_connections: u32,

    /// Open connections from one source address, below --max-connections so that one peer
    /// cannot lock the others out [default: a quarter of --max-connections, at most 64]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_per_peer: Option<u32>,

    /// Time from accept (TLS handshake included) to the end of the first request head, and
    /// from a later request's first byte to the end of its head
    #[arg(long, value_name = "DUR", default_value = "10s")]
    pub head_timeout: Duration,

    /// Time a kept-alive connection may sit idle before it is closed
    #[arg(long, value_name = "DUR", default_value = "15s")]
    pub idle_timeout: Duration,

    /// Show these peers on the status page too ('NAME ADDRESS[:PORT]' per line, as for
    /// baton-query), as far as the access file admits the viewer to their signals and
    /// jobs; this host's own line (its name in any case) and cfengine:// lines (no Baton
    /// history to show) are left out. Not read from BATON_PEERS: a crontab's peers file is
    /// not a request to ask every peer at each page load
    #[arg(long, value_name = "FILE")]
    pub peers: Option<PathBuf>,

    /// Ask --peers over HTTPS, trusting the peer certificates this PEM CA signed (host
    /// names are checked); with --tls-cert, this server presents it as its client identity
    #[arg(
        long,
        value_name = "FILE",
        requires = "peers",
        conflicts_with = "peer_pin"
    )]
    pub peer_ca: Option<PathBuf>,

    /// Ask --peers over HTTPS, trusting only the server certificates with these SHA-256
    /// fingerprints (baton-key show CERT prints one); with --tls-cert, this server presents
    /// it as its client identity
    #[arg(long, value_name = "SHA256[,SHA256...]", requires = "peers")]
    pub peer_pin: Option<String>,

    /// The client identity to present to --peers (mutual TLS): DIR/ID.key as baton-key new
    /// writes it, with DIR/ID.crt beside it [default: --tls-cert and --tls-key]
    #[arg(long, value_name = "FILE")]
    pub peer_key: Option<PathBuf>,

    /// How long the status page waits for each peer
    #[arg(long, value_name = "DUR", default_value = "3s")]
    pub peer_timeout: Duration,

    /// Do not log a line per request
    #[arg(short, long)]
    pub quiet: bool,

    #[command(flatten)]
    pub site: SiteArgs,
}

pub fn baton_serve(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    const BIN: &str = "baton-serve";
    match parse_args::<ServeCli>(BIN, args) {
        Ok(cli) => finish(BIN, run(cli)),
        Err(code) => code,
    }
}

fn run(cli: ServeCli) -> Result<ExitStatus> {
    let (listen, access) = (cli.listen.clone(), cli.access.clone());
    let site = cli.site.resolve()?;
    if site.store.is_some() {
        return Err(Error::new(
            "baton-serve serves the state dir; with an etcd store peers read etcd directly (baton-query --store)",
        ));
    }
    let keys_path = cli.keys.clone();
    let keys = match &cli.keys {
        Some(path) => KeyRing::load(path)?,
        None => KeyRing::default(),
    };
    let tls = match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
        _ => None,
    };
    let max_connections = cli.max_connections as usize;
    let max_per_peer = match cli.max_per_peer {
        None => default_per_peer(max_connections),
        Some(n) if max_connections > 1 && n as usize >= max_connections => {
            return Err(Error::new(format!(
                "--max-per-peer {n} must be below --max-connections {max_connections}, else one peer can lock the others out"
            )))
        }
        Some(n) => n as usize,
    };
    let peers = match &cli.peers {
        Some(path) if !path.as_os_str().is_empty() => Some(peer_view(&cli, path, &site)?),
        _ => None,
    };
    let server = Server::bind(ServeConfig {
        listen,
        access,
        keys,
        keys_path,
        tls,
        limits: Limits {
            max_connections,
            max_per_peer,
            head_timeout: cli
                .head_timeout
                .std()
                .max(std::time::Duration::from_secs(1)),
            idle_timeout: cli
                .idle_timeout
                .std()
                .max(std::time::Duration::from_secs(1)),
            ..Limits::default()
        },
        site,
        log_requests: !cli.quiet,
        peers,
        peer_timeout: cli.peer_timeout.std(),
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| Error::new(format!("cannot handle signal {sig}: {e}")))?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .map_err(|e| Error::new(format!("cannot handle SIGHUP: {e}")))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", server.addr).map_err(stdout_error)?;
        out.flush().map_err(stdout_error)?;
    }
    let tls = match &cli.tls_cert {
        Some(cert) => {
            let fp = baton_identity::load_certs(cert)
                .map(|c| baton_identity::show(&baton_identity::fingerprint(c[0].as_ref())))
                .unwrap_or_default();
            format!("HTTPS, certificate {} SHA256 {fp}", cert.display())
        }
        None => "plain HTTP".to_string(),
    };
    server.announce(&tls);
    server.run(stop, reload)?;
    Ok(EXIT_TRUE)
}

/// The peers of `path` but this host (its name in any case: host names are
/// case-insensitive) and CFEngine hosts, and a client that asks them: over HTTPS with
/// `--peer-ca` or `--peer-pin`, presenting this server's own identity (`--tls-cert`,
/// `--tls-key`) as its client certificate, so a peer's access file admits it by `key:ID`.
fn peer_view(
    cli: &ServeCli,
    path: &std::path::Path,
    site: &baton_core::cli::Site,
) -> Result<PeerView> {
    if cli.peer_timeout == Duration::ZERO {
        return Err(Error::new("--peer-timeout must be longer than 0s"));
    }
    let identity = match (&cli.peer_key, &cli.tls_cert, &cli.tls_key) {
        (Some(key), _, _) => Some(Identity::load(key).map_err(|e| e.context("--peer-key"))?),
        (None, Some(cert), Some(key)) => Some(Identity {
            id: cert
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            certs: baton_identity::load_certs(cert)?,
            key: baton_identity::load_private_key(key)?,
        }),
        _ => None,
    };
    if cli.peer_key.is_some() && cli.peer_ca.is_none() && cli.peer_pin.is_none() {
        return Err(Error::new(
            "--peer-key needs the peers' identity too: --peer-pin SHA256 (baton-key show PEER.crt prints it) or --peer-ca FILE",
        ));
    }
    let tls = match (&cli.peer_ca, &cli.peer_pin) {
        (Some(ca), _) => Some(tls::private_ca(ca, identity).map_err(|e| e.context("--peer-ca"))?),
        (None, Some(pin)) => Some(
            tls::pinned(tls::parse_pins(pin)?, identity).map_err(|e| e.context("--peer-pin"))?,
        ),
        (None, None) => None,
    };
    let https = tls.is_some();
    let peers = Peers::load(path)?;
    let targets = peers
        .names()
        .filter(|n| !n.eq_ignore_ascii_case(&site.host))
        // A CFEngine host (cfengine://) has no Baton history to show.
        .filter(|n| {
            !peers
                .address(n)
                .is_some_and(|a| a.starts_with("cfengine://"))
        })
        .map(|n| peers.target(n, https))
        .collect::<Result<Vec<_>>>()?;
    let client = Client::new(tls, cli.peer_timeout.std());
    Ok(PeerView {
        peers: targets,
        client,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        ServeCli::command().debug_assert();
        let default_port = DEFAULT_LISTEN
            .rsplit_once(':')
            .map(|(_, p)| p.parse::<u16>());
        assert_eq!(default_port, Some(Ok(baton_proto::DEFAULT_PORT)));
    }
}
