fn main() -> std::process::ExitCode {
    baton_signals::cli::baton_signal(std::env::args_os())
}
