//! The report's charts, drawn by `plotters` into SVG text (its SVG backend only: no font
//! library, the text is left to the browser): start-up time against carts held, and p99
//! latency per timeline slice around each event, both designs on one chart, time counted
//! from the event.

use plotters::prelude::*;

use super::Mode;
use super::phases::{EventRun, StartupPoint};
use crate::LabError;

const SIZE: (u32, u32) = (760, 360);
const STATEFUL: RGBColor = RGBColor(0xc6, 0x28, 0x28);
const STATELESS: RGBColor = RGBColor(0x15, 0x65, 0xc0);

fn color(mode: Mode) -> RGBColor {
    match mode {
        Mode::Local => STATEFUL,
        Mode::Shared => STATELESS,
    }
}

fn label(mode: Mode) -> String {
    format!("{} ({} carts)", mode.design(), mode.as_str())
}

fn failed<E: std::fmt::Display>(e: E) -> LabError {
    LabError::experiment("chart", e.to_string())
}

/// Start-up time (seconds) against carts held, one line per design.
///
/// # Errors
/// [`LabError::Experiment`] when plotters fails.
pub(crate) fn startup(title: &str, points: &[StartupPoint]) -> Result<String, LabError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        #[allow(clippy::cast_precision_loss)]
        let x_max = points.iter().map(|p| p.carts as f64).fold(1.0, f64::max) * 1.05;
        let y_max = points
            .iter()
            .map(|p| p.ready_ms / 1000.0)
            .fold(0.1, f64::max)
            * 1.15;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(failed)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|x| format!("{x:.0}"))
            .x_desc("carts held")
            .y_desc("seconds to ready")
            .draw()
            .map_err(failed)?;
        for mode in Mode::BOTH {
            #[allow(clippy::cast_precision_loss)]
            let line: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.mode == mode)
                .map(|p| (p.carts as f64, p.ready_ms / 1000.0))
                .collect();
            let c = color(mode);
            chart
                .draw_series(LineSeries::new(line, c.stroke_width(2)).point_size(3))
                .map_err(failed)?
                .label(label(mode))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(failed)?;
        root.present().map_err(failed)?;
    }
    Ok(svg)
}

/// p99 latency (log scale) per timeline slice around `event` (`kill`, `scale_out`,
/// `scale_in`), seconds from the event, one line per design; a vertical line at the event.
///
/// # Errors
/// [`LabError::Experiment`] when plotters fails.
pub(crate) fn event(title: &str, runs: &[EventRun], event: &str) -> Result<String, LabError> {
    let runs: Vec<&EventRun> = runs.iter().filter(|r| r.event == event).collect();
    let series = |r: &EventRun| -> Vec<(f64, f64)> {
        r.timeline
            .iter()
            .filter(|p| p.requests > p.failed)
            .map(|p| (p.at_secs + p.secs / 2.0 - r.at_secs, p.p99_ms.max(0.1)))
            .collect()
    };
    let all: Vec<(f64, f64)> = runs.iter().flat_map(|r| series(r)).collect();
    let x_min = all.iter().map(|p| p.0).fold(0.0, f64::min) - 0.5;
    let x_max = all.iter().map(|p| p.0).fold(1.0, f64::max) + 0.5;
    let y_max = all.iter().map(|p| p.1).fold(1.0, f64::max) * 2.0;
    let y_min = all.iter().map(|p| p.1).fold(y_max, f64::min) / 2.0;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x_min..x_max, (y_min..y_max).log_scale())
            .map_err(failed)?;
        chart
            .configure_mesh()
            .x_desc("seconds from the event")
            .y_desc("p99 latency, ms")
            .draw()
            .map_err(failed)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, y_min), (0.0, y_max)],
                BLACK.mix(0.6).stroke_width(1),
            )))
            .map_err(failed)?;
        for run in &runs {
            let c = color(run.mode);
            let failed_note = if run.failed > 0 {
                format!(", {} failed", run.failed)
            } else {
                String::new()
            };
            chart
                .draw_series(LineSeries::new(series(run), c.stroke_width(2)))
                .map_err(failed)?
                .label(format!("{}{failed_note}", label(run.mode)))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(failed)?;
        root.present().map_err(failed)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TimelinePoint;

    #[test]
    fn charts_are_svg_with_both_designs() {
        let points = [
            StartupPoint {
                mode: Mode::Local,
                carts: 0,
                ready_ms: 100.0,
                rss_mib: 20.0,
            },
            StartupPoint {
                mode: Mode::Local,
                carts: 1000,
                ready_ms: 900.0,
                rss_mib: 40.0,
            },
            StartupPoint {
                mode: Mode::Shared,
                carts: 1000,
                ready_ms: 120.0,
                rss_mib: 20.0,
            },
        ];
        let svg = startup("Start-up", &points).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("stateful (local carts)"),
            "{svg}"
        );
        let run = EventRun {
            mode: Mode::Shared,
            event: "kill".into(),
            instances: (2, 2),
            at_secs: 1.0,
            instance: "a".into(),
            carts_moved: 0.0,
            settled_secs: Some(0.5),
            failed: 3,
            carts_lost: 0,
            restart_secs: Some(1.0),
            exit_secs: None,
            timeline: vec![
                TimelinePoint {
                    at_secs: 0.0,
                    secs: 0.5,
                    requests: 5,
                    ok: 5,
                    p99_ms: 2.0,
                    ..TimelinePoint::default()
                },
                TimelinePoint {
                    at_secs: 1.0,
                    secs: 0.5,
                    requests: 5,
                    ok: 2,
                    failed: 3,
                    p99_ms: 900.0,
                    ..TimelinePoint::default()
                },
            ],
        };
        let svg = event("Kill", &[run], "kill").unwrap();
        assert!(svg.contains("stateless (shared carts), 3 failed"), "{svg}");
        assert!(svg.contains("<polyline") || svg.contains("<path"), "{svg}");
    }
}
