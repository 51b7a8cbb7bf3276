//! `strata lab`: runs the stateful-vs-stateless experiment of strata-lab with this executable's
//! `serve` roles and prints the claims table and where the report is.

use std::path::PathBuf;

use anyhow::Context;
use strata_lab::experiment::{LabSettings, Plan};

use crate::cli::LabArgs;
use crate::up::print_stdout;

/// Runs the lab until it ends or the first Ctrl-C or SIGTERM (every child is killed either
/// way), then prints the table.
///
/// # Errors
/// When the executable cannot be found, the output directory is not usable, or the lab fails
/// ([`strata_lab::LabError`]).
pub async fn run(args: &LabArgs) -> anyhow::Result<()> {
    let stop = crate::on_signal();
    let now = time::OffsetDateTime::now_utc();
    let timestamp = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("strata-lab").join(timestamp.replace([':', '-'], "")));
    if out.is_file() {
        anyhow::bail!("--out {}: is a file, not a directory", out.display());
    }
    let settings = LabSettings {
        exe: std::env::current_exe().context("cannot find this executable")?,
        out: out.clone(),
        plan: Plan::new(args.quick),
        timestamp,
    };
    let report = strata_lab::experiment::run(&settings, stop).await?;
    print_stdout(&format!(
        "{}\nreport: {}/report.md, report.html, report.json\n",
        report.table(),
        out.display()
    ));
    Ok(())
}
