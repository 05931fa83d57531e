//! What the kernel tells us: a process's RSS and CPU time from /proc, our
//! file-descriptor limit, and the ephemeral port range.
//!
//! Called by `run` between phases and once a second for the peak; cheap
//! (two small file reads per sample).

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde::Serialize;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcSample {
    /// Resident set size now (`VmRSS`), bytes.
    pub rss_bytes: u64,
    /// Peak resident set size so far (`VmHWM`), bytes.
    pub rss_peak_bytes: u64,
    /// User plus system CPU time consumed so far, seconds.
    pub cpu_secs: f64,
    /// Of `cpu_secs`, the time spent in the kernel on the process's behalf
    /// (`stime`), seconds. The kernel charges each scheduler tick to user or
    /// system by where the thread was, so this is a sample, good to a few
    /// ticks.
    pub sys_secs: f64,
}

/// Reads `/proc/<pid>/status` and `/proc/<pid>/stat`; `None` means self.
pub fn sample(pid: Option<u32>) -> anyhow::Result<ProcSample> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_owned(),
    };
    let status = std::fs::read_to_string(format!("{dir}/status"))
        .with_context(|| format!("reading {dir}/status (is the process running?)"))?;
    let stat = std::fs::read_to_string(format!("{dir}/stat")).with_context(|| format!("reading {dir}/stat"))?;
    let (user_secs, sys_secs) = stat_cpu_secs(&stat)?;
    Ok(ProcSample {
        rss_bytes: status_kib(&status, "VmRSS:")? * 1024,
        rss_peak_bytes: status_kib(&status, "VmHWM:")? * 1024,
        cpu_secs: user_secs + sys_secs,
        sys_secs,
    })
}

/// A `kB` field of `/proc/<pid>/status`, in KiB.
fn status_kib(status: &str, field: &str) -> anyhow::Result<u64> {
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("no {field} in /proc status"))?;
    let value = line[field.len()..].trim().trim_end_matches("kB").trim();
    value.parse().with_context(|| format!("bad {field} value {value:?}"))
}

/// (utime, stime) (fields 14 and 15 of `/proc/<pid>/stat`) in seconds.
fn stat_cpu_secs(stat: &str) -> anyhow::Result<(f64, f64)> {
    // The command name (field 2) may hold spaces and ')': split after the last ')'.
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state), so field n is fields[n - 3].
    ensure!(fields.len() > 12, "short /proc stat line");
    let utime: u64 = fields[11].parse().context("bad utime")?;
    let stime: u64 = fields[12].parse().context("bad stime")?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Ok((utime as f64 / ticks, stime as f64 / ticks))
}

/// CPU time of this process so far.
pub fn own_cpu() -> Duration {
    sample(None)
        .map(|s| Duration::from_secs_f64(s.cpu_secs))
        .unwrap_or_default()
}

/// Makes sure we may open `needed` file descriptors: raises the soft
/// RLIMIT_NOFILE to the hard limit (and, as root, the hard limit too if that
/// is not enough). Returns the soft limit in force.
pub fn ensure_nofile(needed: u64) -> anyhow::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid rlimit to write into.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        bail!("getrlimit(RLIMIT_NOFILE): {}", std::io::Error::last_os_error());
    }
    if lim.rlim_cur >= needed {
        return Ok(lim.rlim_cur);
    }
    let wanted = if lim.rlim_max < needed {
        // Raising the hard limit needs CAP_SYS_RESOURCE; try, fall back below.
        libc::rlimit {
            rlim_cur: needed,
            rlim_max: needed,
        }
    } else {
        libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        }
    };
    // SAFETY: wanted is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
        return Ok(wanted.rlim_cur);
    }
    let raised = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: raised is a valid rlimit.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
    bail!(
        "open-file limit too low: need {needed} descriptors, soft limit {} and hard limit {}; \
         raising the hard limit needs root with CAP_SYS_RESOURCE (`ulimit -n {needed}`), \
         or lower --connections",
        lim.rlim_cur,
        lim.rlim_max
    )
}

/// Size of the local (ephemeral) port range: how many connections one client
/// source address can hold to one server address.
pub fn ephemeral_port_count() -> u32 {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range");
    let parsed = range.ok().and_then(|r| {
        let mut it = r.split_whitespace().map(|v| v.parse::<u32>().ok());
        Some((it.next()??, it.next()??))
    });
    match parsed {
        Some((lo, hi)) if hi >= lo => hi - lo + 1,
        _ => 28_232, // Linux default 32768-60999
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_sample_reads_rss_and_cpu() {
        let s = sample(None).unwrap();
        assert!(s.rss_bytes > 0 && s.rss_peak_bytes >= s.rss_bytes);
        assert!(s.cpu_secs >= 0.0);
    }

    #[test]
    fn stat_parse_survives_odd_command_names() {
        let stat = "42 (a) b) S 1 1 1 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 1 0 1 1 1";
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let (user, sys) = stat_cpu_secs(stat).unwrap();
        assert!((user - 250.0 / ticks).abs() < 1e-9, "{user}");
        assert!((sys - 50.0 / ticks).abs() < 1e-9, "{sys}");
        assert!(stat_cpu_secs("42 (a) S 1").is_err());
    }

    #[test]
    fn missing_process_is_a_clear_error() {
        let err = sample(Some(u32::MAX)).unwrap_err();
        assert!(format!("{err:#}").contains("is the process running"), "{err:#}");
    }
}
