//! One worker thread: a glommio executor pinned to a CPU, running its share of the connections,
//! a reporter that hands the main thread one interval of figures per second, and a watchdog
//! that enforces `--timeout`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::timer::sleep;
use glommio::{spawn_local, ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use crate::conn::{ConnMonitor, ConnSlot, Connection};
use crate::plan::{RunPlan, StartGate, WorkerShared};
use crate::stats::{IntervalReport, StatsSet};

/// Registered-buffer memory per executor. The generator does no file I/O, so glommio's 10 MiB
/// default would only eat into RLIMIT_MEMLOCK (often 8 MiB in total).
const IO_MEMORY: usize = 512 * 1024;
/// How often the watchdog looks for requests older than the timeout, at most.
const WATCHDOG_PERIOD: Duration = Duration::from_millis(50);

/// Starts worker `index` on its own thread.
pub fn spawn(
    index: usize,
    plan: Arc<RunPlan>,
    gate: Arc<StartGate>,
    stop: Arc<AtomicBool>,
    reports: Sender<IntervalReport>,
) -> Result<ExecutorJoinHandle<()>, String> {
    let placement = match plan.cpus.get(index).copied().flatten() {
        Some(cpu) => Placement::Fixed(cpu),
        None => Placement::Unbound,
    };
    LocalExecutorBuilder::new(placement)
        .name(&format!("loadgen-{index}"))
        .io_memory(IO_MEMORY)
        .spawn(move || worker_main(index, plan, gate, stop, reports))
        .map_err(|err| {
            format!(
                "cannot start worker thread {index}: {err}\n\
                 glommio needs io_uring (Linux 5.8+). It is unavailable when the \
                 kernel.io_uring_disabled sysctl is set, or inside a container whose seccomp \
                 profile blocks io_uring_setup (Docker's default does: run with \
                 --security-opt seccomp=unconfined), or when RLIMIT_MEMLOCK is below 512 KiB \
                 per thread (ulimit -l)."
            )
        })
}

async fn worker_main(
    index: usize,
    plan: Arc<RunPlan>,
    gate: Arc<StartGate>,
    stop: Arc<AtomicBool>,
    reports: Sender<IntervalReport>,
) {
    let shared = Rc::new(WorkerShared { plan: plan.clone(), gate, stop, stats: RefCell::new(StatsSet::default()) });
    let total = plan.total_connections() as u64;
    let mut monitors = Vec::with_capacity(plan.connections);
    let mut tasks = Vec::with_capacity(plan.connections);
    for local in 0..plan.connections {
        let slot = ConnSlot { global: (index * plan.connections + local) as u64, total };
        let monitor = Rc::new(ConnMonitor::default());
        match Connection::new(shared.clone(), monitor.clone(), slot) {
            Ok(connection) => {
                monitors.push(monitor);
                tasks.push(spawn_local(connection.run()));
            }
            Err(err) => {
                // Validated before the run, so this is not expected; keep the gate counting.
                eprintln!("connection {}: {err}", slot.global);
                shared.gate.mark_ready();
            }
        }
    }
    let done = Rc::new(Cell::new(false));
    spawn_local(report_every_second(shared.clone(), reports.clone(), done.clone())).detach();
    spawn_local(watchdog(monitors, plan.timeout, done.clone())).detach();
    for task in tasks {
        task.await;
    }
    done.set(true);
    let stats = shared.stats.borrow_mut().take();
    // The main thread may have gone (it never does before joining us); nothing to do then.
    let _ = reports.send(IntervalReport { stats, finished: true });
}

/// Sends this thread's figures at each whole second after the run's start.
async fn report_every_second(shared: Rc<WorkerShared>, reports: Sender<IntervalReport>, done: Rc<Cell<bool>>) {
    let Some(start) = shared.wait_for_start().await else {
        return;
    };
    let mut second: u32 = 1;
    while !done.get() {
        let boundary = start + Duration::from_secs(u64::from(second));
        let now = Instant::now();
        if boundary > now {
            sleep((boundary - now).min(Duration::from_millis(100))).await;
            continue;
        }
        second += 1;
        let stats = shared.stats.borrow_mut().take();
        let _ = reports.send(IntervalReport { stats, finished: false });
    }
}

/// Shuts down connections whose oldest request has waited longer than `timeout`.
async fn watchdog(monitors: Vec<Rc<ConnMonitor>>, timeout: Duration, done: Rc<Cell<bool>>) {
    let period = (timeout / 4).clamp(Duration::from_millis(1), WATCHDOG_PERIOD);
    while !done.get() {
        sleep(period).await;
        let now = Instant::now();
        for monitor in &monitors {
            monitor.enforce_timeout(now, timeout);
        }
    }
}
