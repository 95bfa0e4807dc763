//! The peer service behind `baton-serve`: answers the peer protocol's requests
//! (`baton-proto`) with this host's live signals that the asking peer is admitted to see.
//! It owns the HTTP server, TLS on the server side and the access rules.
//!
//! It is the only crate that links a server stack: `baton-query`, `baton-run` and
//! `baton-if` never depend on it.

pub mod access;
pub mod cli;
pub mod http;
pub mod metrics;
pub mod relay;
pub mod serve;
pub mod status;
