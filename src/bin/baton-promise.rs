fn main() -> std::process::ExitCode {
    baton_promise::cli::baton_promise(std::env::args_os())
}
