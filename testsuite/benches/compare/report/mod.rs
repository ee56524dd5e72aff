//! Reporting: the metrics, the markdown table and the number formats.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub(crate) mod svg;

pub(crate) struct Metric {
    pub(crate) key: &'static str,
    pub(crate) scenario: u8,
    pub(crate) value_key: &'static str,
    pub(crate) label: &'static str,
    pub(crate) unit: &'static str,
    pub(crate) lower_is_better: bool,
}

pub(crate) const METRICS: &[Metric] = &[
    Metric {
        key: "s1_bulk_1",
        scenario: 1,
        value_key: "mbps",
        label: "1. bulk, 1 stream (MB/s, higher is better)",
        unit: "MB/s",
        lower_is_better: false,
    },
    Metric {
        key: "s2_bulk_32",
        scenario: 2,
        value_key: "mbps",
        label: "2. bulk, 32 streams (MB/s, higher is better)",
        unit: "MB/s",
        lower_is_better: false,
    },
    Metric {
        key: "s3_rtt_p50",
        scenario: 3,
        value_key: "p50",
        label: "3. 64 B echo RTT p50 (µs, lower is better)",
        unit: "µs",
        lower_is_better: true,
    },
    Metric {
        key: "s3_rtt_p99",
        scenario: 3,
        value_key: "p99",
        label: "3. 64 B echo RTT p99 (µs, lower is better)",
        unit: "µs",
        lower_is_better: true,
    },
    Metric {
        key: "s4_rtt_loaded_p99",
        scenario: 4,
        value_key: "p99",
        label: "4. 64 B echo RTT p99 under bulk load (µs, lower is better)",
        unit: "µs",
        lower_is_better: true,
    },
    Metric {
        key: "s5_open_close",
        scenario: 5,
        value_key: "streams_per_s",
        label: "5. open + echo + close, 64 workers (streams/s, higher is better)",
        unit: "streams/s",
        lower_is_better: false,
    },
    Metric {
        key: "s6_idle_mem",
        scenario: 6,
        value_key: "bytes_per_stream",
        label: "6. heap per idle stream, both ends (bytes, lower is better)",
        unit: "bytes",
        lower_is_better: true,
    },
    Metric {
        key: "s7_peak_rss",
        scenario: 7,
        value_key: "peak_rss_mb",
        label: "7. peak RSS, 32-stream bulk in a child (MB, lower is better)",
        unit: "MB",
        lower_is_better: true,
    },
    Metric {
        key: "w8_bulk_1",
        scenario: 8,
        value_key: "mbps",
        label: "8. bulk, 1 stream (MB/s, higher is better)",
        unit: "MB/s",
        lower_is_better: false,
    },
    Metric {
        key: "w8_peak_rss",
        scenario: 8,
        value_key: "child_peak_rss_mb",
        label: "8. peak RSS of that run, both ends (MB, lower is better)",
        unit: "MB",
        lower_is_better: true,
    },
    Metric {
        key: "w9_bulk_8",
        scenario: 9,
        value_key: "mbps",
        label: "9. bulk, 8 streams (MB/s, higher is better)",
        unit: "MB/s",
        lower_is_better: false,
    },
    Metric {
        key: "w10_echo_excess_p50",
        scenario: 10,
        value_key: "excess_p50_ms",
        label:
            "10. 64 B echo beside one bulk stream, excess over the RTT, p50 (ms, lower is better)",
        unit: "ms",
        lower_is_better: true,
    },
    Metric {
        key: "w10_echo_excess_p99",
        scenario: 10,
        value_key: "excess_p99_ms",
        label: "10. the same, p99 (ms, lower is better)",
        unit: "ms",
        lower_is_better: true,
    },
    Metric {
        key: "w10_bulk_beside_echo",
        scenario: 10,
        value_key: "load_mbps",
        label: "10. the bulk stream meanwhile (MB/s, higher is better)",
        unit: "MB/s",
        lower_is_better: false,
    },
    Metric {
        key: "s11_idle_heap",
        scenario: 11,
        value_key: "idle_heap_kib",
        label: "11. heap per idle connection pair, both ends (KiB, lower is better)",
        unit: "KiB",
        lower_is_better: true,
    },
    Metric {
        key: "s11_idle_rss",
        scenario: 11,
        value_key: "idle_rss_kib",
        label: "11. RSS per idle connection pair (KiB, lower is better)",
        unit: "KiB",
        lower_is_better: true,
    },
    Metric {
        key: "s11_after_heap",
        scenario: 11,
        value_key: "after_heap_kib",
        label: "11. heap per pair 3 s after a burst each (KiB, lower is better)",
        unit: "KiB",
        lower_is_better: true,
    },
    Metric {
        key: "s11_after_rss",
        scenario: 11,
        value_key: "after_rss_kib",
        label: "11. RSS per pair 3 s after the burst (KiB, lower is better)",
        unit: "KiB",
        lower_is_better: true,
    },
    Metric {
        key: "s11_idle_cpu",
        scenario: 11,
        value_key: "idle_cpu_percent",
        label: "11. CPU of the idle process (% of one core, lower is better)",
        unit: "%",
        lower_is_better: true,
    },
];

#[derive(Default)]
pub(crate) struct Cell {
    pub(crate) runs: Vec<f64>,
    pub(crate) failures: Vec<String>,
    pub(crate) failed_streams: usize,
    pub(crate) runs_with_lost_streams: usize,
    pub(crate) stream_errors: Vec<String>,
    pub(crate) extras: Vec<BTreeMap<String, Value>>,
}

pub(crate) fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

pub(crate) fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        let s = format!("{:.0}", v);
        // thousands separators
        let (neg, digits) = s
            .strip_prefix('-')
            .map_or((false, s.as_str()), |d| (true, d));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if neg {
            format!("-{out}")
        } else {
            out
        }
    } else if v.abs() >= 10.0 {
        format!("{:.1}", v)
    } else {
        format!("{:.2}", v)
    }
}

pub(crate) fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}
