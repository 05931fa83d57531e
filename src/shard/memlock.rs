//! Locked memory for io_uring: glommio registers buffers per executor and
//! refuses to start under a memlock limit below its minimum. Raised here to
//! the hard limit before any shard starts, or refused with what to do.
//!
//! Runs once, on the main thread (`app`), and again in a shard's start error
//! (`executor::start_error`) to name the limits in force.

use super::executor::ShardStartError;

/// Locked memory glommio requires of each executor (its check, in
/// `sys/uring.rs`), in bytes.
pub const MIN_MEMLOCK_BYTES: u64 = 512 * 1024;

/// What to do about a memlock limit that is too low.
pub(super) const MEMLOCK_ADVICE: &str = "raise the memlock limit: `ulimit -l unlimited` in the shell that starts fanout, \
     `LimitMEMLOCK=infinity` in its systemd unit, or `--ulimit memlock=-1` on `docker run`/`podman run`";

/// The memlock limits after [`raise_memlock_limit`], in bytes
/// (`u64::MAX`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemlockLimit {
    /// The soft limit, in force.
    pub soft: u64,
    /// The hard limit, the most an unprivileged process may raise it to.
    pub hard: u64,
    /// The soft limit before it was raised.
    pub was: u64,
}

/// Raises the soft memlock limit to the hard one (any process may), so a
/// host whose default soft limit is too low for glommio still starts; then
/// fails with what to do if even the hard limit is below glommio's check.
/// (Each executor's io_uring locks about `executor::IO_MEMORY_BYTES` more, counted per
/// user by older kernels; glommio checks only the minimum.)
pub fn raise_memlock_limit() -> Result<MemlockLimit, ShardStartError> {
    let mut limit = memlock_limit();
    let was = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) } == 0 {
            limit = raised;
        }
    }
    let (soft, hard) = (bytes_of(limit.rlim_cur), bytes_of(limit.rlim_max));
    if soft < MIN_MEMLOCK_BYTES {
        return Err(memlock_error(MIN_MEMLOCK_BYTES));
    }
    Ok(MemlockLimit {
        soft,
        hard,
        was: bytes_of(was),
    })
}

fn memlock_limit() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given; on failure it stays
    // zero, which reads as "too low" and names the limit.
    unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    limit
}

pub(super) fn memlock_error(need_bytes: u64) -> ShardStartError {
    let limit = memlock_limit();
    ShardStartError::MemLock {
        soft_kib: bytes_of(limit.rlim_cur) / 1024,
        hard_kib: bytes_of(limit.rlim_max) / 1024,
        need_kib: need_bytes / 1024,
    }
}

fn bytes_of(limit: libc::rlim_t) -> u64 {
    if limit == libc::RLIM_INFINITY { u64::MAX } else { limit }
}
