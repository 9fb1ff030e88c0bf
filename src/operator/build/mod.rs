//! Pure builders: a twin (and what was observed) in, the desired child objects out. No I/O:
//! the controllers apply what these return.

pub mod dataset_job;
pub mod labels;
