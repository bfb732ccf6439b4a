//! The data path's counters (the per-CPU `COUNTERS` map), summed, for `tollgate status` and the
//! Prometheus endpoint (`tollgate_datapath_packets_total{counter="..."}`).

use std::{fmt::Write as _, sync::OnceLock};

use aya::maps::{MapData, PerCpuArray};
use gateway_common::Counter;
use parking_lot::Mutex;

use super::{InterceptError, map_error_of};

/// The counters map of the running gateway, once interception has started.
static PUBLISHED: OnceLock<Mutex<PerCpuArray<MapData, u64>>> = OnceLock::new();

/// Makes `map` the one [`prometheus`] reads (the first call wins: one gateway per process).
pub(crate) fn publish(map: PerCpuArray<MapData, u64>) {
    let _ = PUBLISHED.set(Mutex::new(map));
}

/// Every counter of `map` by name, summed over CPUs.
pub(crate) fn read(map: &PerCpuArray<MapData, u64>) -> Result<Vec<(String, u64)>, InterceptError> {
    Counter::ALL
        .iter()
        .map(|&counter| {
            let values = map
                .get(&(counter as u32), 0)
                .map_err(|e| map_error_of(gateway_common::MAP_COUNTERS, &e))?;
            Ok((counter.name().to_owned(), values.iter().sum()))
        })
        .collect()
}

/// The counters in the Prometheus text format; empty when no eBPF programs run for this
/// gateway (`interception.mode = "off"`).
#[must_use]
pub fn prometheus() -> String {
    let Some(map) = PUBLISHED.get() else {
        return String::new();
    };
    let Ok(counters) = read(&map.lock()) else {
        return String::new();
    };
    render(&counters)
}

fn render(counters: &[(String, u64)]) -> String {
    let mut text = String::from(
        "# HELP tollgate_datapath_packets_total Packets and connects the eBPF programs steered, \
         passed or dropped, by counter.\n# TYPE tollgate_datapath_packets_total counter\n",
    );
    for (name, value) in counters {
        let _ = writeln!(
            text,
            "tollgate_datapath_packets_total{{counter=\"{name}\"}} {value}"
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn counters_render_as_one_labelled_family() {
        let text = render(&[
            ("xdp_dropped_fragment".to_owned(), 3),
            ("routed_syn_steered".to_owned(), 0),
        ]);
        assert!(text.starts_with("# HELP tollgate_datapath_packets_total "));
        assert!(text.contains("# TYPE tollgate_datapath_packets_total counter\n"));
        assert!(
            text.contains("tollgate_datapath_packets_total{counter=\"xdp_dropped_fragment\"} 3\n")
        );
        assert!(
            text.contains("tollgate_datapath_packets_total{counter=\"routed_syn_steered\"} 0\n")
        );
    }
}
