//! Integration tests across crates live in `tests/`; this crate also builds the `fira` command line
//! from the trainer's entry point as `fira-e2e` (`src/bin/fira-e2e.rs`) so that they can run it as a process
//! (`CARGO_BIN_EXE_fira` is only given to tests of the package that owns the binary).
