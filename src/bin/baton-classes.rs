fn main() -> std::process::ExitCode {
    baton_classes::cli::baton_classes(std::env::args_os(), &baton_signals::live_class_names)
}
