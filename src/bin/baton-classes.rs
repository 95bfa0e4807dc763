fn main() -> std::process::ExitCode {
    baton_classes::cli::baton_classes(std::env::args_os())
}
