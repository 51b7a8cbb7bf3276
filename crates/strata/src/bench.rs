//! `strata bench`: runs the strata-lab load generator and prints its report as JSON on stdout.

use std::time::Duration;

use anyhow::Context;
use strata_lab::LoadSpec;

use crate::cli::BenchArgs;
use crate::up::print_stdout;

/// The time bound of a run given only a request bound: every run is bounded in time, and ten
/// minutes is far beyond any run `--requests` is meant for.
const REQUESTS_TIME_CAP: Duration = Duration::from_secs(600);
/// The time bound of a run given neither bound.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// Runs the load and prints the report.
///
/// # Errors
/// [`strata_lab::LabError`] for an invalid spec (the caller exits with 2) or an unresolvable
/// host. Failed requests are part of the report, not an error.
pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let spec = spec(args)?;
    tracing::info!(url = %spec.url, concurrency = spec.concurrency, duration = ?spec.duration, requests = ?spec.requests, "bench starting");
    let report = strata_lab::run(&spec).await?;
    let json = serde_json::to_string_pretty(&report).context("cannot encode the report")?;
    print_stdout(&format!("{json}\n"));
    Ok(())
}

fn spec(args: &BenchArgs) -> Result<LoadSpec, strata_lab::LabError> {
    let mut spec = LoadSpec::new(args.url.clone());
    spec.concurrency = args.concurrency;
    spec.requests = args.requests;
    spec.duration = match (args.duration, args.requests) {
        (Some(secs), _) => seconds("duration", secs)?,
        (None, Some(_)) => REQUESTS_TIME_CAP,
        (None, None) => DEFAULT_DURATION,
    };
    spec.request_timeout = seconds("timeout", args.timeout)?;
    spec.method =
        args.method
            .to_ascii_uppercase()
            .parse()
            .map_err(|_| strata_lab::LabError::Spec {
                field: "method",
                message: format!("`{}` is not an HTTP method", args.method),
            })?;
    spec.paths.clone_from(&args.path);
    Ok(spec)
}

fn seconds(field: &'static str, secs: f64) -> Result<Duration, strata_lab::LabError> {
    Duration::try_from_secs_f64(secs).map_err(|_| strata_lab::LabError::Spec {
        field,
        message: format!("`{secs}` is not a number of seconds"),
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn bench(args: &[&str]) -> BenchArgs {
        let cli = Cli::try_parse_from(
            ["strata", "bench", "--url", "http://127.0.0.1:1/x"]
                .iter()
                .chain(args),
        )
        .unwrap();
        match cli.command {
            Command::Bench(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_run_is_bounded_in_time() {
        assert_eq!(spec(&bench(&[])).unwrap().duration, DEFAULT_DURATION);
        let by_count = spec(&bench(&["-n", "100"])).unwrap();
        assert_eq!(
            (by_count.requests, by_count.duration),
            (Some(100), REQUESTS_TIME_CAP)
        );
        assert_eq!(
            spec(&bench(&["-d", "0.5"])).unwrap().duration,
            Duration::from_millis(500)
        );
    }

    #[test]
    fn flags_reach_the_spec() {
        let built = spec(&bench(&[
            "-c", "3", "--path", "/a", "--path", "/b?x=1", "--method", "head",
        ]))
        .unwrap();
        assert_eq!(built.concurrency, 3);
        assert_eq!(built.paths, ["/a", "/b?x=1"]);
        assert_eq!(built.method.as_str(), "HEAD");
        assert!(spec(&bench(&["-d=-1"])).is_err());
    }
}
