//! The bar-chart plot, docs/bench.svg.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;

use super::{fmt_num, median, Cell};
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

pub(crate) fn write_svg(
    path: &std::path::Path,
    impls: &[Impl],
    cells: &BTreeMap<(String, Impl), Cell>,
    subtitle: &str,
) -> io::Result<()> {
    let med = |key: &str, imp: Impl| {
        cells
            .iter()
            .find(|((k, i), _)| *k == key && *i == imp)
            .and_then(|(_, c)| median(&c.runs))
    };
    let bars = |key: &str| impls.iter().map(|&i| (i, med(key, i))).collect::<Vec<_>>();
    let (w, h) = (980.0, 440.0);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">"##
    );
    let _ = writeln!(svg, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="24" font-size="16" font-weight="bold" text-anchor="middle">smolmux vs raw TCP, yamux and picomux over loopback TCP (medians)</text>"##,
        w / 2.0
    );
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="42" font-size="11" text-anchor="middle" fill="#555">{}</text>"##,
        w / 2.0,
        xml_escape(subtitle)
    );
    svg_panel(
        &mut svg,
        20.0,
        90.0,
        560.0,
        300.0,
        "Bulk throughput, MB/s (higher is better)",
        "MB/s",
        &[
            ("1 stream", bars("s1_bulk_1")),
            ("32 streams", bars("s2_bulk_32")),
        ],
    );
    svg_panel(
        &mut svg,
        610.0,
        90.0,
        350.0,
        300.0,
        "64 B echo RTT p99, µs (lower is better)",
        "µs",
        &[
            ("under bulk load (4)", bars("s4_rtt_loaded_p99")),
            ("idle (3)", bars("s3_rtt_p99")),
        ],
    );
    // legend
    let mut lx = 200.0;
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
        lx += 150.0;
    }
    let _ = writeln!(svg, "</svg>");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, svg)
}
