//! The tables and the chart.

use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;

use super::generator::Outcome;
use super::server::Memory;
use crate::support::svg::escape;

/// One row of the report: one server (mode, priority) at one load.
pub struct Row {
    /// The mode, and `nice` for the workers at a lower priority.
    pub label: String,
    /// Offered load over the pool's capacity, if given as a load.
    pub load: Option<f64>,
    pub outcome: Option<Outcome>,
    /// Why the row has no figures, or what went wrong with it.
    pub failure: Option<String>,
    pub mem_start: Option<Memory>,
    pub mem_end: Option<Memory>,
    /// The machine's 1-minute load average before and after the row.
    pub load_avg: (Option<f64>, Option<f64>),
    /// CPU time over the measured window, in cores (CPU s per wall s).
    pub server_cpu: Option<f64>,
    pub generator_cpu: Option<f64>,
}

/// A latency in µs, shown in ms with 3 significant digits or so.
pub fn ms(us: u64) -> String {
    let ms = us as f64 / 1e3;
    if ms < 1.0 {
        format!("{ms:.3}")
    } else if ms < 10.0 {
        format!("{ms:.2}")
    } else if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

fn quantile(h: &Histogram<u64>, q: f64) -> String {
    if h.is_empty() {
        "-".into()
    } else {
        ms(h.value_at_quantile(q))
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn opt<T>(x: Option<T>, f: impl FnOnce(T) -> String) -> String {
    x.map_or_else(|| "-".into(), f)
}

pub fn load_label(load: Option<f64>) -> String {
    opt(load, |l| format!("{:.0}%", l * 100.0))
}

const MAIN_HEADERS: [&str; 14] = [
    "mode",
    "load",
    "/ping p50",
    "p99",
    "p99.9",
    "/work done/s",
    "/work p99",
    "p99 1st s",
    "p99 last s",
    "503",
    "errors",
    "RSS MiB start/peak/end",
    "gen late p99",
    "load avg",
];

fn main_cells(row: &Row) -> Vec<String> {
    let mut cells = vec![row.label.clone(), load_label(row.load)];
    match &row.outcome {
        Some(o) => {
            let first = o.work_by_second.first().expect("a window");
            let last = o.work_by_second.last().expect("a window");
            cells.extend([
                quantile(&o.ping, 0.5),
                quantile(&o.ping, 0.99),
                quantile(&o.ping, 0.999),
                format!("{:.0}", o.work_throughput()),
                quantile(&o.work, 0.99),
                quantile(first, 0.99),
                quantile(last, 0.99),
                (o.work_status.unavailable + o.ping_status.unavailable).to_string(),
                (o.errors.total() + o.work_status.other + o.ping_status.other).to_string(),
            ]);
        }
        None => cells.extend((0..9).map(|_| "-".to_string())),
    }
    cells.push(match (row.mem_start, row.mem_end) {
        (Some(s), Some(e)) => format!("{}/{}/{}", mib(s.rss_kib), mib(e.peak_kib), mib(e.rss_kib)),
        _ => "-".into(),
    });
    cells.push(opt(row.outcome.as_ref(), |o| quantile(&o.late, 0.99)));
    let la = |x: Option<f64>| opt(x, |x| format!("{x:.2}"));
    cells.push(format!("{}→{}", la(row.load_avg.0), la(row.load_avg.1)));
    cells
}

/// Prints rows of cells: the mode and load columns as text, the rest as
/// figures.
fn print_cells(headers: &[String], rows: &[Vec<String>], markdown: bool) {
    crate::support::table::print(headers, rows, 2, markdown);
}

/// The main table: latencies in ms.
pub fn print_main(rows: &[Row], markdown: bool) {
    let headers: Vec<String> = MAIN_HEADERS.iter().map(|h| h.to_string()).collect();
    let cells: Vec<Vec<String>> = rows.iter().map(main_cells).collect();
    print_cells(&headers, &cells, markdown);
}

/// The second table: `/work` p99 per second of the schedule, and what the
/// run cost.
pub fn print_details(rows: &[Row], markdown: bool) {
    let windows = rows
        .iter()
        .filter_map(|r| r.outcome.as_ref().map(|o| o.work_by_second.len()))
        .max()
        .unwrap_or(1);
    let mut headers: Vec<String> = vec!["mode".into(), "load".into()];
    headers.push("offered /work/s + /ping/s".into());
    headers.extend((1..=windows).map(|s| format!("/work p99 s{s}")));
    headers.extend(["503 p99", "drain s", "peak conns", "server CPU", "gen CPU"].map(String::from));
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let mut cells = vec![row.label.clone(), load_label(row.load)];
            match &row.outcome {
                Some(o) => {
                    cells.push(format!("{:.0} + {:.0}", o.work_rate, o.ping_rate));
                    cells.extend(
                        (0..windows).map(|s| opt(o.work_by_second.get(s), |h| quantile(h, 0.99))),
                    );
                    cells.push(quantile(&o.shed, 0.99));
                    cells.push(format!("{:.2}", o.drain_secs));
                    cells.push(o.peak_conns.to_string());
                }
                None => cells.extend((0..windows + 4).map(|_| "-".to_string())),
            }
            cells.push(opt(row.server_cpu, |c| format!("{c:.2}")));
            cells.push(opt(row.generator_cpu, |c| format!("{c:.2}")));
            cells
        })
        .collect();
    print_cells(&headers, &cells, markdown);
}

/// What went wrong, row by row: failed rows, and errors by kind.
pub fn print_problems(rows: &[Row]) {
    for row in rows {
        let name = format!("{} at {}", row.label, load_label(row.load));
        if let Some(why) = &row.failure {
            println!("{name}: {why}");
        }
        if let Some(o) = &row.outcome {
            let e = &o.errors;
            let other = o.work_status.other + o.ping_status.other;
            if e.total() + other > 0 {
                println!(
                    "{name}: of {} requests, {} not sent (connection cap), {} connect, {} I/O, {} timeouts, {} other statuses{}",
                    o.due,
                    e.not_sent,
                    e.connect,
                    e.io,
                    e.timeout,
                    other,
                    opt(e.first.as_ref(), |m| format!("; first: {m}"))
                );
            }
        }
    }
}

// ---- the chart ---------------------------------------------------------------

/// Writes grouped bars of `/ping` p99 (log scale): one group per load, one
/// bar per mode.
pub fn write_svg(
    path: &Path,
    rows: &[Row],
    title: &str,
    subtitle: &[String],
) -> std::io::Result<()> {
    let mut labels: Vec<&str> = Vec::new();
    let mut loads: Vec<Option<f64>> = Vec::new();
    for row in rows {
        if !labels.contains(&row.label.as_str()) {
            labels.push(&row.label);
        }
        if !loads.contains(&row.load) {
            loads.push(row.load);
        }
    }
    let value = |label: &str, load: Option<f64>| -> Option<(f64, bool)> {
        let row = rows.iter().find(|r| r.label == label && r.load == load)?;
        let o = row.outcome.as_ref()?;
        if o.ping.is_empty() {
            return None;
        }
        let failed = o.errors.total() + o.ping_status.other + o.work_status.other > 0;
        Some((o.ping.value_at_quantile(0.99) as f64 / 1e3, failed))
    };
    let values: Vec<f64> = labels
        .iter()
        .flat_map(|l| loads.iter().filter_map(move |&ld| value(l, ld)))
        .map(|(v, _)| v)
        .collect();
    let (min, max) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let (min, max) = if values.is_empty() {
        (0.1, 10.0)
    } else {
        (min.max(1e-3), max.max(1e-3))
    };
    // At least half a decade under the shortest bar, so that it shows.
    let lo = (min.log10() - 0.5).floor();
    let hi = (max.log10().ceil()).max(lo + 1.0);

    let color_of = |i: usize| color(labels[i]);
    let (bar_w, bar_gap, group_gap) = (34.0, 4.0, 40.0);
    let (left, right) = (80.0, 20.0);
    let group_w = labels.len() as f64 * (bar_w + bar_gap) - bar_gap;
    let plot_w = loads.len() as f64 * (group_w + group_gap);
    // About 6.6 px per character of the 12 px sans-serif subtitle.
    let text_w = subtitle
        .iter()
        .map(|l| 20.0 + 6.6 * l.chars().count() as f64)
        .fold(760.0, f64::max);
    let width = (left + plot_w + right).max(text_w);
    let subtitle_h = 16.0 * subtitle.len() as f64;
    let legend_y = 48.0 + subtitle_h;
    let legend_per_line = ((width - 20.0) / 150.0).floor().max(1.0) as usize;
    let legend_lines = labels.len().div_ceil(legend_per_line);
    let plot_top = legend_y + 18.0 * legend_lines as f64 + 24.0;
    let plot_h = 320.0;
    let plot_bottom = plot_top + plot_h;
    let height = plot_bottom + 78.0;
    let y = |v: f64| plot_bottom - (v.max(1e-3).log10() - lo) / (hi - lo) * plot_h;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(svg, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        svg,
        r##"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"##,
        escape(title)
    );
    for (i, line) in subtitle.iter().enumerate() {
        let _ = writeln!(
            svg,
            r##"<text x="10" y="{:.0}" fill="#555">{}</text>"##,
            40.0 + 16.0 * i as f64,
            escape(line)
        );
    }
    for (i, label) in labels.iter().enumerate() {
        let lx = 10.0 + (i % legend_per_line) as f64 * 150.0;
        let ly = legend_y + (i / legend_per_line) as f64 * 18.0;
        let _ = writeln!(
            svg,
            r##"<rect x="{lx:.0}" y="{:.0}" width="12" height="12" fill="{}"/><text x="{:.0}" y="{ly:.0}">{}</text>"##,
            ly - 10.0,
            color_of(i),
            lx + 17.0,
            escape(label)
        );
    }

    // Grid: 1, 2 and 5 × each power of ten; labels on the powers of ten
    // (and on 2 and 5 as well when the axis spans few decades).
    let _ = writeln!(
        svg,
        r##"<text x="12" y="{:.0}" fill="#555" transform="rotate(-90 12 {:.0})" text-anchor="middle">/ping p99 (log scale)</text>"##,
        (plot_top + plot_bottom) / 2.0,
        (plot_top + plot_bottom) / 2.0
    );
    let decades = (hi - lo) as i32;
    for p in (lo as i32)..=(hi as i32) {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(p);
            if v.log10() > hi + 1e-9 {
                continue;
            }
            let gy = y(v);
            let major = m == 1.0;
            let _ = writeln!(
                svg,
                r##"<line x1="{left}" y1="{gy:.1}" x2="{:.0}" y2="{gy:.1}" stroke="{}" stroke-width="1"/>"##,
                left + plot_w,
                if major { "#bbb" } else { "#eee" }
            );
            if major || decades <= 3 {
                let _ = writeln!(
                    svg,
                    r##"<text x="{:.0}" y="{:.1}" text-anchor="end" fill="#555" font-size="11">{}</text>"##,
                    left - 6.0,
                    gy + 4.0,
                    axis_label(v)
                );
            }
        }
    }
    let _ = writeln!(
        svg,
        r##"<line x1="{left}" y1="{plot_bottom}" x2="{:.0}" y2="{plot_bottom}" stroke="#000"/>"##,
        left + plot_w
    );

    for (g, &load) in loads.iter().enumerate() {
        let gx = left + group_gap / 2.0 + g as f64 * (group_w + group_gap);
        for (i, label) in labels.iter().enumerate() {
            let bx = gx + i as f64 * (bar_w + bar_gap);
            let cx = bx + bar_w / 2.0;
            match value(label, load) {
                Some((v, failed)) => {
                    let top = y(v);
                    let outline = if failed {
                        r##" stroke="#b00" stroke-width="2" stroke-dasharray="3 2""##
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        svg,
                        r##"<rect x="{bx:.1}" y="{top:.1}" width="{bar_w}" height="{:.1}" fill="{}"{outline}><title>{} at {}: /ping p99 {}</title></rect>"##,
                        (plot_bottom - top).max(1.0),
                        color_of(i),
                        escape(label),
                        load_label(load),
                        bar_label(v)
                    );
                    let _ = writeln!(
                        svg,
                        r##"<text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"##,
                        top - 4.0,
                        bar_label(v)
                    );
                }
                None => {
                    let _ = writeln!(
                        svg,
                        r##"<text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-size="10" fill="#b00">n/a</text>"##,
                        plot_bottom - 6.0
                    );
                }
            }
        }
        let row = rows.iter().find(|r| r.load == load);
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.0}" text-anchor="middle" font-weight="bold">{} load</text>"##,
            gx + group_w / 2.0,
            plot_bottom + 18.0,
            load_label(load)
        );
        if let Some(o) = row.and_then(|r| r.outcome.as_ref()) {
            let _ = writeln!(
                svg,
                r##"<text x="{:.1}" y="{:.0}" text-anchor="middle" fill="#555" font-size="11">{:.0} /work/s + {:.0} /ping/s</text>"##,
                gx + group_w / 2.0,
                plot_bottom + 34.0,
                o.work_rate,
                o.ping_rate
            );
        }
    }
    let _ = writeln!(
        svg,
        r##"<text x="10" y="{:.0}" fill="#555" font-size="11">Bar labels in ms. Dashed red outline: some requests of that run got no answer or a status other than 200/503 (not in the percentile).</text>"##,
        plot_bottom + 62.0
    );
    svg.push_str("</svg>\n");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, svg)
}

/// A bar's colour: one hue per mode, lighter for its `nice` variant.
fn color(label: &str) -> &'static str {
    let nice = label.ends_with(" nice");
    match (label.trim_end_matches(" nice"), nice) {
        ("inline", _) => "#7f7f7f",
        ("spawn-blocking", _) => "#d62728",
        ("rayon", _) => "#ff7f0e",
        ("offload", false) => "#1f77b4",
        ("offload", true) => "#9ecae1",
        ("offload-shed", false) => "#2ca02c",
        ("offload-shed", true) => "#98df8a",
        _ => "#9467bd",
    }
}

/// A grid line's label, from ms.
fn axis_label(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{} s", trim(ms / 1000.0))
    } else if ms >= 1.0 {
        format!("{} ms", trim(ms))
    } else {
        format!("{} µs", trim(ms * 1000.0))
    }
}

/// A bar's value, from ms.
fn bar_label(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else if ms >= 1.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.3}")
    }
}

/// A round number without trailing zeros.
fn trim(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}
