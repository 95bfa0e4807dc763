//! Asking peers for their signals: the client behind `baton-query` (many hosts at once,
//! prefixes, freshness filters, waiting with a bound, k-of-n), and its TLS trust.
//!
//! It does not touch the local state dir: what it learns goes to stdout, for `baton-if
//! --stdin` or a shell script to decide on.

pub mod cfengine;
pub mod cli;
pub mod client;
pub mod tls;

pub use client::{Client, Target};
