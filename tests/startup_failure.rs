//! Verifies that start-up failures are loud and never half alive: under a
//! memlock limit glommio cannot start with (`ulimit -l 64`, the default of
//! many container runtimes), fanout exits non-zero before it serves
//! anything and says how to raise the limit; with only the soft limit low,
//! it raises it to the hard limit itself and serves. See: #9

mod common;

use common::free_port;
use common::process::{FanoutProcess, fanout_command_under};

/// Flags of an instance whose broker is unreachable: start-up must not
/// depend on Kafka.
fn args(kafka: &str) -> Vec<&str> {
    vec!["--port", "0", "--shards", "2", "--kafka-brokers", kafka]
}

#[test]
fn a_memlock_limit_too_low_for_glommio_stops_the_process_with_the_fix() {
    let kafka = format!("127.0.0.1:{}", free_port());
    let failed = FanoutProcess::run_to_failure(fanout_command_under("ulimit -l 64", &args(&kafka)));
    assert_eq!(failed.status.code(), Some(1), "stderr: {}", failed.stderr);
    assert!(
        !failed.stdout.contains("listening"),
        "it must not claim to serve: {}",
        failed.stdout
    );
    for fix in ["ulimit -l", "LimitMEMLOCK=", "--ulimit memlock="] {
        assert!(
            failed.stderr.contains(fix),
            "the message names {fix:?}: {}",
            failed.stderr
        );
    }
    assert!(
        failed.stderr.contains("64 KiB"),
        "it names the limit: {}",
        failed.stderr
    );
}

#[test]
fn a_low_soft_memlock_limit_is_raised_to_the_hard_one() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) }, 0);
    assert!(
        limit.rlim_max >= 2 * 1024 * 1024,
        "this test needs a hard memlock limit of at least 2 MiB (scripts/test.sh raises it)"
    );
    let kafka = format!("127.0.0.1:{}", free_port());
    let mut fanout = FanoutProcess::start_command(fanout_command_under("ulimit -S -l 64", &args(&kafka)));
    assert_eq!(fanout.http_get("/healthz").0, 200);
    assert!(
        fanout.log().contains("raised the memlock soft limit"),
        "{}",
        fanout.log_tail()
    );
    fanout.signal(libc::SIGTERM);
    assert!(fanout.wait_exit(std::time::Duration::from_secs(10)).success());
}
