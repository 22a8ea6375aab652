fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(scunblock::cli::main())
}
