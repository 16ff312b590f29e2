//! The `log-capturer` binary.

fn main() -> std::process::ExitCode {
    log_capturer::cli::main()
}
