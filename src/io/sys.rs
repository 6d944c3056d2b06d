//! Start-up checks of the host: io_uring available, enough locked memory, enough descriptors.

/// Fails with an explanation naming the fix when the kernel will not give us an io_uring.
pub fn check_io_uring() -> Result<(), String> {
    // io_uring_params is 120 bytes; a zeroed one asks for defaults.
    let mut params = [0u8; 120];
    // SAFETY: a plain syscall with a valid pointer to a buffer of the size the kernel expects.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    if fd >= 0 {
        // SAFETY: fd is a descriptor we just created.
        unsafe { libc::close(fd as i32) };
        // The data path's own ring (io::uring) also needs DEFER_TASKRUN, single-issuer rings, multishot receive and
        // provided-buffer rings: Linux 6.1.
        return match io_uring::IoUring::<io_uring::squeue::Entry>::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(4)
        {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Err(format!(
                "cannot start: this kernel's io_uring has no DEFER_TASKRUN ({e}); ferrule needs Linux 6.1 or newer"
            )),
            Err(e) => Err(format!("cannot start: io_uring_setup with DEFER_TASKRUN failed: {e}")),
        };
    }
    let err = std::io::Error::last_os_error();
    let disabled =
        std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").map(|s| s.trim().to_string()).unwrap_or_default();
    let why = match err.raw_os_error() {
        Some(libc::ENOSYS) => "the kernel has no io_uring (Linux 6.1 or newer is needed, built with CONFIG_IO_URING)".to_string(),
        Some(libc::EPERM) | Some(libc::EACCES) if disabled == "2" || disabled == "1" => format!(
            "io_uring is disabled by the sysctl kernel.io_uring_disabled={disabled}; run `sysctl -w kernel.io_uring_disabled=0` (or add ferrule's group to kernel.io_uring_group)"
        ),
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "io_uring_setup was refused (EPERM): a seccomp profile blocks it, as Docker's default profile does since 25.0; run with --security-opt seccomp=<profile allowing io_uring_setup/io_uring_enter/io_uring_register>".to_string()
        }
        Some(libc::ENOMEM) => "io_uring_setup ran out of locked memory: raise RLIMIT_MEMLOCK (ulimit -l, LimitMEMLOCK= in systemd)".to_string(),
        _ => format!("io_uring_setup failed: {err}"),
    };
    Err(format!("cannot start: {why}"))
}

/// Raises the soft RLIMIT_MEMLOCK to the hard limit and checks that every executor's io_memory fits.
pub fn check_memlock(executors: usize, io_memory_kib: usize) -> Result<(), String> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) != 0 {
            return Ok(());
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) == 0 {
                lim = raised;
            }
        }
    }
    if lim.rlim_cur == libc::RLIM_INFINITY {
        return Ok(());
    }
    // glommio's reactor also wants some locked memory of its own beyond the registered buffers.
    let need_kib = executors * (io_memory_kib + 64);
    let have_kib = (lim.rlim_cur / 1024) as usize;
    if have_kib < need_kib || have_kib < 512 {
        return Err(format!(
            "cannot start: RLIMIT_MEMLOCK is {have_kib} KiB but {executors} executors with proxy.io_memory_kib = {io_memory_kib} need about {need_kib} KiB (and glommio needs at least 512 KiB); raise it (`ulimit -l`, LimitMEMLOCK= in a systemd unit, memlock in /etc/security/limits.conf) or lower proxy.io_memory_kib / proxy.workers"
        ));
    }
    Ok(())
}

/// Raises the soft descriptor limit to the hard one: every client costs a descriptor.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

/// The soft descriptor limit this process would have after [`raise_nofile`] (its hard limit), without changing it.
pub fn nofile_hard_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit with a valid struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    lim.rlim_max
}

/// The warning `ferrule -t` and start-up give when the descriptor limit is below what the configured client
/// limits need (`None` when it is enough, or no client limit is configured).
pub fn nofile_warning(cfg: &crate::config::Config, workers: usize, limit: u64) -> Option<String> {
    let needed = cfg.descriptors_needed(workers)? as u64;
    (limit < needed).then(|| {
        format!(
            "the descriptor limit ({limit}) is below what the configured client limits need (about {needed}: \
             client connections, backend connections, listeners, rings); raise it (ulimit -n, LimitNOFILE= in \
             systemd) or lower client_connections / proxy.max_client_connections"
        )
    })
}

/// The CPUs this process may run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    core_affinity::get_core_ids().map(|ids| ids.into_iter().map(|c| c.id).collect()).unwrap_or_else(|| vec![0])
}

/// Hands the heap memory that is free back to the system. glibc keeps what freed chunks leave behind in each
/// thread's arena (only the top of a heap is trimmed by itself), so after thousands of clients came and went the
/// process would stay at its peak; `malloc_trim` releases every free page, in every arena. Other allocators
/// return memory themselves: nothing to do there.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own state.
    unsafe {
        libc::malloc_trim(0);
    }
}
