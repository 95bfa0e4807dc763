fn main() -> std::process::ExitCode {
    baton_identity::cli::baton_key(std::env::args_os())
}
