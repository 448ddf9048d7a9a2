//! pythia-engine: everything in pythia-suite that must be fast or exact, in plain Rust.
//!
//! Data flows one way: raw text → [`tokenizer`] → [`indexed`] `.bin/.idx` → [`index`]
//! (doc/sample/shuffle) → [`loader`] rows and batches. No module here knows about Python;
//! the `pythia-python` crate converts types and releases the GIL.

pub mod atomic;
pub mod corpus;
pub mod error;
pub mod index;
pub mod indexed;
pub mod loader;
pub mod tokenize;
pub mod tokenizer;

pub use error::{Error, Result};
