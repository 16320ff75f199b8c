//! `sluice demo` (stub).

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {}

pub fn main(_args: DemoArgs) -> ExitCode {
    ExitCode::FAILURE
}
