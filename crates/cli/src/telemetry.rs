//! Logging for the command line: human-readable lines on stderr, so stdout stays for output.

use tracing_subscriber::EnvFilter;

/// `default` applies when RUST_LOG is not set. lapin's own error lines are left out by the
/// defaults: every broker error reaches the user through Conveyor's messages.
pub(crate) fn init(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
