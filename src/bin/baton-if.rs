fn main() -> std::process::ExitCode {
    baton_classes::cli::baton_if(std::env::args_os(), &baton_signals::live_class_names)
}
