fn main() -> std::process::ExitCode {
    baton_classes::cli::baton_if(std::env::args_os())
}
