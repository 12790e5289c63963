//! What agent-mount's cross-component tests (`tests/`) share beyond the node tests' support
//! files: the agents tree they run real agents from ([`tree`]), an OTLP/HTTP receiver
//! ([`otlp`]), and a process started in a container's view of the agents ([`container`]).

pub mod container;
pub mod otlp;
pub mod tree;
