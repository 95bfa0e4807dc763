fn main() -> std::process::ExitCode {
    baton_classes::cli::baton_classes(
        std::env::args_os(),
        baton_classes::cli::LiveSignals {
            all: &baton_signals::live_class_names,
            has: &baton_signals::is_live_signal,
        },
    )
}
