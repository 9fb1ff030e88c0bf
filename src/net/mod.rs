//! Outbound requests of the dataset crawlers: which addresses they may reach.

pub mod guard;
pub mod http;
pub mod robots;

pub use guard::{AddressClass, NetworkGuard, Refusal};
