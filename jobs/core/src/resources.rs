//! What the process has used, for the summaries the CLI prints and the benchmarks read:
//! peak resident memory (Linux `VmHWM`) of the process, sampled resident memory per stage
//! of a run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Peak resident set size of this process in bytes, when the OS reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Resident set size of this process now, in bytes (Linux `/proc/self/statm`).
#[allow(unsafe_code)]
pub fn current_rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page_size).ok()?)
}

/// Watches this process's resident memory while one stage runs, from a thread that reads it
/// every 20 ms. (Resetting the kernel's high-water mark instead would also reset what
/// `getrusage` and `/usr/bin/time` report for the whole process.)
pub struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    /// Starts watching; `None` where the OS does not report resident memory.
    pub fn start() -> Option<RssSampler> {
        let first = current_rss_bytes()?;
        let (peak, stop) = (Arc::new(AtomicU64::new(first)), Arc::new(AtomicBool::new(false)));
        let (thread_peak, thread_stop) = (Arc::clone(&peak), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                while !thread_stop.load(Ordering::Relaxed) {
                    if let Some(rss) = current_rss_bytes() {
                        thread_peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            })
            .ok()?;
        Some(RssSampler {
            peak,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops watching and returns the largest resident size seen, in bytes.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let now = current_rss_bytes().unwrap_or(0);
        self.peak.load(Ordering::Relaxed).max(now)
    }
}

impl Drop for RssSampler {
    /// A run dropped mid-stage (its future cancelled) must not leave the thread sampling.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Peak RSS as `123.4 MiB`, or `unknown`.
pub fn peak_rss_text() -> String {
    peak_rss_bytes().map_or("unknown".into(), |b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)))
}

/// Caps glibc's malloc arenas at one per core before any thread starts (unless
/// `MALLOC_ARENA_MAX` is set, which glibc reads itself). glibc's default of eight per core
/// lets every tokio worker and blocking thread keep its own heap, and freed batches stay
/// scattered over them: at 5M clients `ebroker run` peaked at 1037 MiB with the default and
/// 835 MiB with one arena per core (clean 982 -> 591 MiB), about 5% slower.
#[allow(unsafe_code)]
pub fn limit_allocator_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only changes an allocator tunable; called before other threads exist.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

/// Hands memory the allocator keeps after a stage back to the system (glibc keeps freed
/// arenas), so that the next stage of a long `run` starts from a small footprint.
#[allow(unsafe_code)]
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's heaps to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sampler_sees_memory_a_stage_touched_and_gave_back() {
        let Some(sampler) = RssSampler::start() else { return }; // not Linux
        let before = current_rss_bytes().unwrap();
        let block = vec![1u8; 64 << 20];
        std::thread::sleep(std::time::Duration::from_millis(100));
        drop(std::hint::black_box(block));
        release_free_memory();
        let peak = sampler.finish();
        assert!(peak >= before + (60 << 20), "peak {peak} before {before}");
        assert!(
            current_rss_bytes().unwrap() < peak,
            "the block was given back, the peak kept"
        );
    }
}
