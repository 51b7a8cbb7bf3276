//! `strata health URL`: one GET with a deadline, for container health checks and scripts that
//! wait for a role to be ready. The image has no shell or curl, so the binary probes itself.

use anyhow::{Context, bail};

use crate::cli::HealthArgs;

/// Probes the URL once; prints the status (or why there is none) on stdout.
///
/// # Errors
/// An invalid URL, no answer in time, or an answer other than 2xx (exit code 1).
pub async fn run(args: &HealthArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .build()
        .context("cannot build an HTTP client")?;
    let response = client
        .get(&args.url)
        .send()
        .await
        .with_context(|| format!("{} did not answer", args.url))?;
    let status = response.status();
    if !status.is_success() {
        bail!("{} answered {status}", args.url);
    }
    crate::up::print_stdout(&format!("{} {status}\n", args.url));
    Ok(())
}
