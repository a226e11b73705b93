//! runner-dispatch: parse the command line and run.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = runner_dispatch::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(runner_dispatch::cli::run(cli))
}
