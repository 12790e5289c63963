//! agent-mount's cross-component tests live in `tests/`; this library holds what they share.
