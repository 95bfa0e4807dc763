fn main() -> std::process::ExitCode {
    baton_query::cli::baton_query(std::env::args_os())
}
