//! The bar-chart plots: docs/bench.svg (loopback) and docs/wan.svg (through the emulated link).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;

use super::{fmt_num, median, Cell, METRICS};
use crate::link::LinkParams;
use crate::peers::Impl;

pub(crate) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub(crate) fn impl_color(imp: Impl) -> &'static str {
    match imp {
        Impl::Raw => "#7f7f7f",
        Impl::Smolmux => "#1f77b4",
        Impl::Yamux => "#ff7f0e",
        Impl::Picomux => "#2ca02c",
        Impl::SmolmuxSmuxV2 => "#9467bd",
        Impl::SmolmuxYamux => "#8c564b",
        Impl::AsyncSmux => "#d62728",
    }
}

/// A labelled group of bars, one per implementation (`None`: no value, drawn as "fail").
pub(crate) type BarGroup<'a> = (&'a str, Vec<(Impl, Option<f64>)>);

/// A bar-chart panel: groups of bars, one bar per implementation.
#[allow(clippy::too_many_arguments)]
pub(crate) fn svg_panel(
    svg: &mut String,
    x0: f64,
    y0: f64,
    w: f64,
    h: f64,
    title: &str,
    unit: &str,
    groups: &[BarGroup],
) {
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="13" font-weight="bold" text-anchor="middle">{}</text>"##,
        x0 + w / 2.0,
        y0 - 8.0,
        xml_escape(title)
    );
    let max = groups
        .iter()
        .flat_map(|(_, bars)| bars.iter().filter_map(|(_, v)| *v))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let max = if max <= 0.0 { 1.0 } else { max };
    // nice tick step
    let raw_step = max / 5.0;
    let mag = 10f64.powf(raw_step.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw_step)
        .unwrap_or(raw_step);
    // Headroom above the tallest bar for its value label.
    let top = (max * 1.08 / step).ceil() * step;
    let (px, pw, ph) = (x0 + 60.0, w - 70.0, h - 50.0);
    let y_of = |v: f64| y0 + ph - v / top * ph;
    let mut t = 0.0;
    while t <= top + step * 0.01 {
        let y = y_of(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e0e0e0"/>"##,
            px + pw
        );
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            px - 5.0,
            y + 4.0,
            fmt_num(t)
        );
        t += step;
    }
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle" transform="rotate(-90 {:.1} {:.1})">{}</text>"##,
        x0 + 12.0,
        y0 + ph / 2.0,
        x0 + 12.0,
        y0 + ph / 2.0,
        xml_escape(unit)
    );
    let _ = writeln!(
        svg,
        r##"<line x1="{px:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##,
        y0 + ph,
        px + pw,
        y0 + ph
    );
    let gw = pw / groups.len().max(1) as f64;
    for (gi, (label, bars)) in groups.iter().enumerate() {
        let gx = px + gi as f64 * gw;
        let bw = (gw * 0.8) / bars.len().max(1) as f64;
        for (bi, (imp, v)) in bars.iter().enumerate() {
            let bx = gx + gw * 0.1 + bi as f64 * bw;
            match v {
                Some(v) if v.is_finite() => {
                    let y = y_of(*v);
                    let _ = writeln!(
                        svg,
                        r##"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {} {}</title></rect>"##,
                        bx + 2.0,
                        bw - 4.0,
                        y0 + ph - y,
                        impl_color(*imp),
                        imp.title(),
                        fmt_num(*v),
                        xml_escape(unit)
                    );
                    let _ = writeln!(
                        svg,
                        r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"##,
                        bx + bw / 2.0,
                        y - 3.0,
                        fmt_num(*v)
                    );
                }
                _ => {
                    let _ = writeln!(
                        svg,
                        r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="#c00">fail</text>"##,
                        bx + bw / 2.0,
                        y0 + ph - 3.0
                    );
                }
            }
        }
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"##,
            gx + gw / 2.0,
            y0 + ph + 18.0,
            xml_escape(label)
        );
    }
}

/// The runs of every metric, by cell key and implementation.
pub(crate) type Cells = BTreeMap<(String, Impl), Cell>;

/// A panel's place in the plot and what it shows.
struct Panel<'a> {
    x: f64,
    y: f64,
    width: f64,
    title: &'a str,
    unit: &'a str,
    groups: Vec<BarGroup<'a>>,
}

/// The median of a metric's runs for `imp`, if it has any.
fn med(cells: &Cells, key: &str, imp: Impl) -> Option<f64> {
    cells
        .get(&(key.to_string(), imp))
        .and_then(|c| median(&c.runs))
}

/// The loopback plot, docs/bench.svg: bulk throughput and the echo's p99.
pub(crate) fn write_svg(
    path: &std::path::Path,
    impls: &[Impl],
    cells: &Cells,
    subtitle: &str,
) -> io::Result<()> {
    let bars = |key: &str| {
        impls
            .iter()
            .map(|&i| (i, med(cells, key, i)))
            .collect::<Vec<_>>()
    };
    let panels = [
        Panel {
            x: 20.0,
            y: 90.0,
            width: 560.0,
            title: "Bulk throughput, MB/s (higher is better)",
            unit: "MB/s",
            groups: vec![
                ("1 stream", bars("s1_bulk_1")),
                ("32 streams", bars("s2_bulk_32")),
            ],
        },
        Panel {
            x: 610.0,
            y: 90.0,
            width: 350.0,
            title: "64 B echo RTT p99, µs (lower is better)",
            unit: "µs",
            groups: vec![
                ("under bulk load (4)", bars("s4_rtt_loaded_p99")),
                ("idle (3)", bars("s3_rtt_p99")),
            ],
        },
    ];
    write_plot(
        path,
        (980.0, 440.0),
        "smolmux vs raw TCP, yamux and picomux over loopback TCP (medians)",
        subtitle,
        impls,
        &panels,
    )
}

/// The WAN plot, docs/wan.svg: each scenario's throughput as a ratio to raw TCP's in the same
/// run (MB/s if raw TCP did not run), and the echo's excess over the RTT beside bulk, per link.
pub(crate) fn write_wan_svg(
    path: &std::path::Path,
    impls: &[Impl],
    cells: &Cells,
    links: &[LinkParams],
    subtitle: &str,
) -> io::Result<()> {
    let key = |metric: &str, link: LinkParams| {
        let m = METRICS
            .iter()
            .find(|m| m.key == metric)
            .expect("a WAN metric");
        crate::cell_key(m, Some(link))
    };
    // The subtitle names the links in full; a group names its link by the RTT.
    let short = |l: LinkParams| format!("{} ms", l.rtt.as_millis());
    // Scenarios that did not run have no group (a group of bars all "fail" would say they had).
    let ran = |key: &str| cells.keys().any(|(k, _)| k == key);
    let ratios = impls.contains(&Impl::Raw);
    let mut throughput_labels = Vec::new();
    let mut throughput_bars = Vec::new();
    for (metric, what) in [
        ("w8_bulk_1", "1 stream"),
        ("w9_bulk_8", "8 streams"),
        ("w10_bulk_beside_echo", "beside echo"),
    ] {
        for &link in links {
            let k = key(metric, link);
            if !ran(&k) {
                continue;
            }
            let raw = med(cells, &k, Impl::Raw).filter(|r| *r > 0.0);
            throughput_labels.push(format!("{what}, {}", short(link)));
            throughput_bars.push(
                impls
                    .iter()
                    .map(|&i| {
                        let v = med(cells, &k, i);
                        (
                            i,
                            if ratios {
                                v.zip(raw).map(|(v, r)| v / r)
                            } else {
                                v
                            },
                        )
                    })
                    .collect::<Vec<_>>(),
            );
        }
    }
    let mut excess_labels = Vec::new();
    let mut excess_bars = Vec::new();
    for &link in links {
        for (metric, what) in [
            ("w10_echo_excess_p50", "p50"),
            ("w10_echo_excess_p99", "p99"),
        ] {
            let k = key(metric, link);
            if !ran(&k) {
                continue;
            }
            excess_labels.push(format!("{what}, {}", short(link)));
            excess_bars.push(
                impls
                    .iter()
                    .map(|&i| (i, med(cells, &k, i)))
                    .collect::<Vec<_>>(),
            );
        }
    }
    let panels = [
        Panel {
            x: 20.0,
            y: 90.0,
            width: 1160.0,
            title: if ratios {
                "Throughput, × raw TCP through the same link (higher is better)"
            } else {
                "Throughput, MB/s (higher is better)"
            },
            unit: if ratios { "× raw TCP" } else { "MB/s" },
            groups: throughput_labels
                .iter()
                .map(String::as_str)
                .zip(throughput_bars)
                .collect(),
        },
        Panel {
            x: 20.0,
            y: 450.0,
            width: 1160.0,
            title: "64 B echo beside bulk: excess over the RTT, ms (lower is better)",
            unit: "ms",
            groups: excess_labels
                .iter()
                .map(String::as_str)
                .zip(excess_bars)
                .collect(),
        },
    ];
    write_plot(
        path,
        (1200.0, 800.0),
        "smolmux vs raw TCP and the other multiplexers through an emulated WAN link (medians)",
        subtitle,
        impls,
        &panels,
    )
}

/// A plot of `(width, height)`: a title, a subtitle, the panels and a legend.
fn write_plot(
    path: &std::path::Path,
    (w, h): (f64, f64),
    title: &str,
    subtitle: &str,
    impls: &[Impl],
    panels: &[Panel],
) -> io::Result<()> {
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">"##
    );
    let _ = writeln!(svg, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="24" font-size="16" font-weight="bold" text-anchor="middle">{}</text>"##,
        w / 2.0,
        xml_escape(title)
    );
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="42" font-size="11" text-anchor="middle" fill="#555">{}</text>"##,
        w / 2.0,
        xml_escape(subtitle)
    );
    for p in panels {
        svg_panel(
            &mut svg, p.x, p.y, p.width, 300.0, p.title, p.unit, &p.groups,
        );
    }
    // legend
    let step = 150.0;
    let mut lx = (w - step * impls.len() as f64) / 2.0 + 20.0;
    for &imp in impls {
        let _ = writeln!(
            svg,
            r##"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{}"/>"##,
            h - 22.0,
            impl_color(imp)
        );
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="12">{}</text>"##,
            lx + 16.0,
            h - 12.0,
            imp.title()
        );
        lx += step;
    }
    let _ = writeln!(svg, "</svg>");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, svg)
}
