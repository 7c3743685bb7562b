//! Berth resource types, validation and protocol definitions. This crate does no I/O.
