//! Baton's shared vocabulary: the one clock, durations, class names, the state dir, host
//! identity, durable file writes and the exit-code funnel every binary ends in.
//!
//! It is not where any feature lives: it holds only what two or more crates must agree on.

pub mod cli;
pub mod clock;
pub mod duration;
pub mod error;
pub mod fsutil;
pub mod lock;
pub mod name;
pub mod safefs;
pub mod tz;

pub use clock::Clock;
pub use duration::Duration;
pub use error::{Error, Result};
