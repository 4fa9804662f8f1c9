//! What the process has used, for the summaries the CLI prints and the benchmarks read:
//! peak resident memory (Linux `VmHWM`).

/// Peak resident set size of this process in bytes, when the OS reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Peak RSS as `123.4 MiB`, or `unknown`.
pub fn peak_rss_text() -> String {
    peak_rss_bytes().map_or("unknown".into(), |b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)))
}

/// Hands memory the allocator keeps after a stage back to the system (glibc keeps freed
/// arenas), so that the next stage of a long `run` starts from a small footprint.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's heaps to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}
