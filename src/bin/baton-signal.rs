fn main() -> std::process::ExitCode {
    baton_store::cli::baton_signal(std::env::args_os())
}
