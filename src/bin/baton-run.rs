fn main() -> std::process::ExitCode {
    baton_launch::cli::baton_run(std::env::args_os())
}
