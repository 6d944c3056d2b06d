//! The twemproxy-compatible stats JSON (`GET /stats` and `proxy.stats_port`), merged from every worker's snapshot.

use super::control::Control;
use super::metrics;

pub async fn twemproxy_json(control: &Control) -> String {
    let stats = metrics::collect(control).await;
    crate::stats::render_twemproxy(&stats, &metrics::process_info(control))
}
