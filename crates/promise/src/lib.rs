//! `baton-promise`: a CFEngine promise module (CFEngine's custom promise types, 3.17 and
//! later; the JSON variant of the module protocol) that gives policy two promise types:
//!
//! - `baton_signal:` a Baton signal of this host raised (kept when it is already live,
//!   repaired when raised) or cleared;
//! - `baton_query:` ask hosts (Baton hosts, or `cfengine://HOST`) for signals, defining
//!   the prefixed classes `baton-query` would print; kept when the question was answered
//!   (match or no match), not kept when a host could not be asked.
//!
//! It is not a CFEngine agent: cf-agent evaluates class guards, `if`, `classes` and
//! `action` bodies itself and sends this module the promiser and attributes alone.

pub mod cli;
pub mod promises;
pub mod protocol;

pub use protocol::serve;
