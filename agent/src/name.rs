//! The shared name type: the compiled policy hands these out and every event
//! that carries one shares it.

/// A name shared by many events (node, workload, segment, rule, cgroup,
/// executable): cloning it is a reference count, not an allocation.
pub type Name = std::sync::Arc<str>;
