//! Output into a pipe that closes early (`fira generate … | head`).
//!
//! Rust's runtime ignores SIGPIPE, so a write to a closed pipe returns an error, which `println!`
//! turns into a panic with a backtrace. Command-line tools end quietly instead, as the shell
//! expects: the default action of SIGPIPE is restored before anything is printed.

/// Lets SIGPIPE end the process, as it does for other Unix tools.
pub fn end_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: `signal` with the default disposition installs no handler; it is called at the start
    // of the process, before any thread is spawned.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
