fn main() -> std::process::ExitCode {
    baton_signals::serve_cli::baton_serve(std::env::args_os())
}
