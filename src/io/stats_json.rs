//! The twemproxy-compatible stats JSON, merged from every worker's snapshot.

use super::control::Control;
use std::rc::Rc;

pub async fn twemproxy_json(control: &Rc<Control>) -> String {
    let snaps = control.snapshot().await;
    let (mut total, mut curr) = (0u64, 0u64);
    for s in &snaps {
        total += s.stats.clients_accepted;
        curr += s.stats.clients_current;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut root = serde_json::Map::new();
    root.insert("service".into(), "ferrule".into());
    root.insert("source".into(), host.trim().into());
    root.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    root.insert("uptime".into(), control.started.elapsed().as_secs().into());
    root.insert("timestamp".into(), now.into());
    root.insert("total_connections".into(), total.into());
    root.insert("curr_connections".into(), curr.into());
    serde_json::Value::Object(root).to_string()
}
