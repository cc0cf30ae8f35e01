//! The `nnmpi` command.

mod cli;

fn main() {
    restore_default_sigpipe();
    if let Err(e) = cli::main() {
        if let Some(cli::Preempted(message)) = e.downcast_ref() {
            // Every rank stopped at the same mini-batch and rank 0 saved: a clean end.
            if !message.is_empty() {
                eprintln!("nnmpi: {message}");
            }
            std::process::exit(cli::EXIT_PREEMPTED);
        }
        if !e.is::<cli::ReportedElsewhere>() {
            eprintln!("error: {}", cli::describe(&e));
        }
        std::process::exit(1);
    }
}

/// Rust programs start with SIGPIPE ignored, so a write to a closed pipe (`nnmpi predict | head`)
/// would make `println!` panic. Like other Unix tools, nnmpi should just end quietly then.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; it only resets a signal
    // disposition to the system default.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
