//! The `fira` command line under another file name (so it does not collide with the trainer's
//! `fira`), built here for the end-to-end tests from the same entry point.

fn main() {
    std::process::exit(trainer::run_cli());
}
