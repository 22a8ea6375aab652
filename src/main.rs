//! The `scunblock` binary: a thin command line (src/cli/) over the library.

mod cli;

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(cli::main())
}
