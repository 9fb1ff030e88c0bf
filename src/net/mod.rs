//! Outbound HTTP: which addresses the dataset crawlers may reach, and server-sent events.

pub mod guard;
pub mod http;
pub mod robots;
pub mod sse;

pub use guard::{AddressClass, NetworkGuard, Refusal};
