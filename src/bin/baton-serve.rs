fn main() -> std::process::ExitCode {
    baton_serve::cli::baton_serve(std::env::args_os())
}
