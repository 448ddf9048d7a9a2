//! Document sources for tokenization: JSON-lines files, plain, zstd-compressed (the Pile's
//! `.jsonl.zst`, concatenated frames) or gzip-compressed, read as a stream so a 30 GB shard never
//! sits in memory. Every error names the file, and the line where there is one. Also the string
//! columns of Arrow data (Parquet files, saved datasets), read in place from pyarrow's buffers.

mod document;
mod fast_document;
mod lines;
mod python_json;
mod string_column;

pub use document::{parse_document, Document, DocumentFields};
pub use lines::{open_lines, Compression, LineChunk, LineChunker, Lines};
#[cfg(test)]
pub(crate) use string_column::offset_bytes;
pub use string_column::{Row, StringColumn};
