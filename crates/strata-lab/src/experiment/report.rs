//! The lab's report: one serializable object ([`LabReport`], `report.json`), rendered as
//! `report.md` (the claims table and the figures behind it) and `report.html` (the same with
//! the charts inline); the charts are also written as SVG files beside them.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::phases::{EventRun, Measured, StartupPoint, Steady};
use super::{LabSettings, Mode, Plan, chart, rows};
use crate::LabError;

/// Whether a claim holds on the measured figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    #[serde(rename = "holds")]
    Holds,
    #[serde(rename = "does not hold")]
    DoesNotHold,
    #[serde(rename = "depends")]
    Depends,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::DoesNotHold => "does not hold",
            Verdict::Depends => "depends",
        }
    }
}

/// One measured number.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Figure {
    pub name: String,
    /// `null` in JSON when it could not be measured.
    pub value: f64,
    pub unit: String,
}

impl Figure {
    fn render(&self) -> String {
        let value = if !self.value.is_finite() {
            "not reached".to_owned()
        } else if (self.value.fract() == 0.0 && self.unit.is_empty()) || self.value.abs() >= 100.0 {
            format!("{:.0}", self.value)
        } else {
            format!("{:.2}", self.value)
        };
        if self.unit.is_empty() || !self.value.is_finite() {
            format!("{}: {value}", self.name)
        } else {
            format!("{}: {value} {}", self.name, self.unit)
        }
    }
}

/// One claim and what each design measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    /// `startup`, `latency`, `resources`, `scale_out`, `scale_in`, `recovery`.
    pub key: String,
    pub claim: String,
    /// What was measured, and how.
    pub measure: String,
    pub stateful: Vec<Figure>,
    pub stateless: Vec<Figure>,
    pub verdict: Verdict,
    /// Why, from the figures.
    pub why: String,
}

/// Everything a lab run found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LabReport {
    pub timestamp: String,
    /// `debug` or `release`: the build of the processes measured.
    pub build: String,
    pub plan: Plan,
    /// How the two designs were deployed.
    pub setup: Vec<String>,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    pub startup: Vec<StartupPoint>,
    pub steady: Vec<Steady>,
    pub events: Vec<EventRun>,
}

/// The chart files, by name: (file, title).
const CHARTS: [(&str, &str); 4] = [
    ("startup.svg", "Start-up time against carts held"),
    ("kill.svg", "Latency around kill -9 of one api instance"),
    ("scale_out.svg", "Latency around scaling out"),
    ("scale_in.svg", "Latency around scaling in"),
];

impl LabReport {
    pub(crate) fn new(settings: &LabSettings, m: &Measured) -> LabReport {
        let plan = &settings.plan;
        let instances = |mode| {
            m.steady
                .iter()
                .find(|s| s.mode == mode)
                .map_or(0, |s| s.instances)
        };
        let setup = vec![
            format!(
                "Every process is a `strata serve` child of this executable on loopback ports, \
                 on this machine, one measurement at a time; {} build.",
                build()
            ),
            format!(
                "Stateful: `carts.mode = \"local\"`, {} api instances behind a gateway that \
                 hashes each cart's owner cookie to its instance (no bounded load); each keeps \
                 its carts in memory with its own log (group-committed fsync, snapshots), \
                 learns its peers from the gateway's admin API and hands carts over when \
                 instances join or leave.",
                instances(Mode::Local)
            ),
            format!(
                "Stateless: `carts.mode = \"shared\"`, {} api instances behind a round-robin \
                 gateway, all on one embedded SQLite store (WAL: every process opens the same \
                 file, writers take turns) with an in-memory cache each (a deployment shares \
                 Redis instead; here a cart read on one instance may be stale until the cache's \
                 TTL after an update on another, which changes no latency).",
                instances(Mode::Shared)
            ),
            format!(
                "Load: the carts scenario of `strata bench` ({} carts made first, reads and \
                 updates in turn), open loop at {}/s, latency from each request's intended send \
                 time; timelines in slices of {} s. Each deployment holds {} more carts \
                 (stateful: preloaded, split among its first instances; stateless: in the \
                 store): what scaling moves and a restart reloads.",
                plan.carts, plan.rate, plan.slice_secs, plan.held_carts
            ),
        ];
        let mut notes = Vec::new();
        if plan.quick {
            notes.push(format!(
                "Quick run (`--quick`): start-up with {} carts instead of 0, 100,000 and \
                 1,000,000; shorter runs at a lower rate.",
                plan.startup_carts
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        LabReport {
            timestamp: settings.timestamp.clone(),
            build: build().to_owned(),
            plan: plan.clone(),
            setup,
            rows: rows::rows(m),
            notes,
            startup: m.startup.clone(),
            steady: m.steady.clone(),
            events: m.events.clone(),
        }
    }

    /// The claims table in Markdown: claim, stateful measured, stateless measured, verdict
    /// with why.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| claim | stateful (local carts) measured | stateless (shared carts) measured | verdict |\n\
             |---|---|---|---|\n",
        );
        for row in &self.rows {
            let cell = |figures: &[Figure]| {
                if figures.is_empty() {
                    "not measured".to_owned()
                } else {
                    figures
                        .iter()
                        .map(Figure::render)
                        .collect::<Vec<_>>()
                        .join("<br>")
                }
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | **{}**: {} |",
                row.claim,
                cell(&row.stateful),
                cell(&row.stateless),
                row.verdict.as_str(),
                row.why
            );
        }
        out
    }

    /// `report.md`.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "# strata lab: stateful against stateless\n\n{}{} build, run {}.\n\n",
            if self.plan.quick { "Quick run, " } else { "" },
            self.build,
            self.timestamp
        );
        out.push_str(&self.table());
        out.push_str("\n## What was measured\n\n");
        for row in &self.rows {
            let _ = writeln!(out, "- **{}**: {}.", row.key, row.measure);
        }
        out.push_str("\n## Setup\n\n");
        for line in &self.setup {
            let _ = writeln!(out, "- {line}");
        }
        if !self.notes.is_empty() {
            out.push_str("\n## Notes\n\n");
            for line in &self.notes {
                let _ = writeln!(out, "- {line}");
            }
        }
        out.push_str("\n## Charts\n\n");
        for (file, title) in CHARTS {
            let _ = writeln!(out, "![{title}]({file})\n");
        }
        out
    }

    /// `report.html`: the table and the charts inline.
    pub fn html(&self, charts: &[(String, String)]) -> String {
        let mut out = String::from(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>strata lab</title><style>\
             body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}\
             table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.4em;vertical-align:top}\
             th{background:#f3f3f3}.holds{color:#1a7f37}.does-not-hold{color:#c62828}.depends{color:#9a6700}\
             </style></head><body>\n",
        );
        let _ = writeln!(
            out,
            "<h1>strata lab: stateful against stateless</h1><p>{}{} build, run {}.</p>",
            if self.plan.quick { "Quick run, " } else { "" },
            escape(&self.build),
            escape(&self.timestamp)
        );
        out.push_str(
            "<table><tr><th>claim</th><th>stateful (local carts) measured</th>\
             <th>stateless (shared carts) measured</th><th>verdict</th></tr>\n",
        );
        for row in &self.rows {
            let cell = |figures: &[Figure]| {
                figures
                    .iter()
                    .map(|f| escape(&f.render()))
                    .collect::<Vec<_>>()
                    .join("<br>")
            };
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><b class=\"{}\">{}</b>: {}</td></tr>",
                escape(&row.claim),
                cell(&row.stateful),
                cell(&row.stateless),
                row.verdict.as_str().replace(' ', "-"),
                row.verdict.as_str(),
                escape(&row.why)
            );
        }
        out.push_str("</table>\n<h2>Setup</h2><ul>");
        for line in self.setup.iter().chain(&self.notes) {
            let _ = write!(out, "<li>{}</li>", escape(line));
        }
        out.push_str("</ul>\n<h2>Charts</h2>\n");
        for (title, svg) in charts {
            let _ = writeln!(
                out,
                "<figure><figcaption>{}</figcaption>{svg}</figure>",
                escape(title)
            );
        }
        out.push_str("</body></html>\n");
        out
    }

    /// Writes `report.json`, `report.md`, the charts and `report.html` into `dir`.
    ///
    /// # Errors
    /// [`LabError::Write`] when a file cannot be written, [`LabError::Experiment`] when a
    /// chart cannot be drawn.
    pub fn write(&self, dir: &Path) -> Result<(), LabError> {
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| LabError::Write { path, source })
        };
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| LabError::experiment("report", e.to_string()))?;
        write("report.json", &json)?;
        write("report.md", &self.markdown())?;
        let mut charts = Vec::new();
        for (file, title) in CHARTS {
            let svg = match file {
                "startup.svg" => chart::startup(title, &self.startup)?,
                event => chart::event(title, &self.events, event.trim_end_matches(".svg"))?,
            };
            write(file, &svg)?;
            charts.push((title.to_owned(), svg));
        }
        write("report.html", &self.html(&charts))
    }
}

/// The build of this executable (and so of the processes it starts).
fn build() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_render_with_their_unit_or_as_not_reached() {
        let f = |value, unit: &str| Figure {
            name: "x".into(),
            value,
            unit: unit.into(),
        };
        assert_eq!(f(3.0, "").render(), "x: 3");
        assert_eq!(f(1.2345, "ms").render(), "x: 1.23 ms");
        assert_eq!(f(1234.4, "MiB").render(), "x: 1234 MiB");
        assert_eq!(f(f64::NAN, "s").render(), "x: not reached");
        assert_eq!(escape("a<b & c>"), "a&lt;b &amp; c&gt;");
    }
}
