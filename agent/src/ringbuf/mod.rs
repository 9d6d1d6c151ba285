//! Ring buffer: kernel records in, decoded records out.
pub mod decode;
pub mod reader;
