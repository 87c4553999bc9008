//! The sync loop: source → model → plan → dataplane.
