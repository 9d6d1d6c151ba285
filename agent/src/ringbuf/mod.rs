//! Ring buffer: kernel records in, decoded records out.
pub mod decode;
mod legacy;
pub mod reader;
