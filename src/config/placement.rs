//! Which core runs what: `--shards`, `--ingest-core`, `--no-pin` checked
//! against the cores the machine has.

use super::{Cli, ConfigError};

/// Placement of threads on cores.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Number of shards.
    pub shard_count: u16,
    /// Ingest core, or `None` when unpinned.
    pub ingest_core: Option<usize>,
    /// Core of each shard, or `None` when unpinned.
    pub shard_cores: Option<Vec<usize>>,
}

pub(super) fn placement(cli: &Cli, cores: usize) -> Result<Placement, ConfigError> {
    let shard_count = cli.shards.unwrap_or_else(|| cores.saturating_sub(1).max(1) as u16);
    if shard_count == 0 {
        return Err(ConfigError::Zero("--shards"));
    }
    if cli.no_pin {
        return Ok(Placement {
            shard_count,
            ingest_core: None,
            shard_cores: None,
        });
    }
    if cli.ingest_core >= cores {
        return Err(ConfigError::NoSuchCore {
            core: cli.ingest_core,
            cores,
        });
    }
    let needed = shard_count as usize + 1;
    if needed > cores {
        return Err(ConfigError::TooManyShards {
            shards: shard_count,
            needed,
            cores,
        });
    }
    let shard_cores = (0..cores)
        .filter(|&c| c != cli.ingest_core)
        .take(shard_count as usize)
        .collect();
    Ok(Placement {
        shard_count,
        ingest_core: Some(cli.ingest_core),
        shard_cores: Some(shard_cores),
    })
}
