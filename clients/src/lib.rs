//! The load clients.
