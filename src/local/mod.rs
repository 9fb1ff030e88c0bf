//! Running twins on one machine: `twin chat` (a terminal client for any twin endpoint).
//! `twin up` and `twin status` come next (DESIGN §11).

pub mod chat;
