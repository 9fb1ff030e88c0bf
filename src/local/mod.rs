//! Running twins on one machine: `twin up` (the YAML users `kubectl apply`, checked as the API
//! server would check it and run here), `twin status`, and `twin chat` (a terminal client for any
//! twin endpoint). DESIGN §11.

pub mod board;
pub mod chat;
pub mod endpoint;
pub mod manifest;
pub mod plan;
pub mod schema;
pub mod serving;
pub mod state;
pub mod train;
pub mod up;
