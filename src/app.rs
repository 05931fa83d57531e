//! Starts the engine and stops it in order.
//!
//! Startup, each step complete before the next, so the process is never
//! half alive: raise the memlock soft limit (glommio), embedded broker (if
//! asked), metrics and readiness, one SO_REUSEPORT listener and one inbox
//! per shard, the shard executors (each confirms it runs), the Kafka
//! consumer with its topology thread, the ingest thread; only then do the
//! shards start serving (`StartGate`). Any failure stops everything started
//! and is returned. Shutdown (SPEC §10): `/readyz` 503 first
//! ([`Engine::start_draining`], for `--drain-grace`), then refuse new
//! upgrades, stop ingest (it gives the shards up, then commits within
//! `--drain-timeout`); each shard delivers what it still holds, closes its
//! clients with 1001 and ends within `--drain-timeout`.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use socket2::{Domain, Socket, Type};

use crate::auth::redis::RedisClient;
use crate::config::{Brokers, Config, default_instance_id};
use crate::ingest::{self, dispatch::Dispatcher, embedded::EmbeddedBroker, kafka};
use crate::metrics::{Gauge, IngestMetrics, Registry, ShardMetrics};
use crate::readiness::Readiness;
use crate::shard::executor::{self, ShardStart, StartGate};
use crate::shard::{ShardId, Shared, inbox};

/// A running engine.
pub struct Engine {
    local_addr: SocketAddr,
    bootstrap: String,
    instance_id: String,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    ingest: Option<JoinHandle<()>>,
    shards: Vec<glommio::ExecutorJoinHandle<()>>,
    // Last: the broker must outlive the consumer's final commit.
    embedded: Option<EmbeddedBroker>,
}

impl Engine {
    /// Starts everything; returns once every shard runs and serves.
    pub fn start(config: Config) -> Result<Engine> {
        if config.shard.allowed_origins.is_empty() {
            tracing::warn!("--allowed-origins is not set: WebSocket upgrades from every origin are accepted");
        }
        match &config.auth.redis_url {
            Some(url) => {
                RedisClient::new(url, config.auth.redis_timeout).with_context(|| format!("--redis-url {url:?}"))?;
            }
            None => tracing::warn!("--redis-url is not set: admin connections on /ws answer 503"),
        }
        let memlock = executor::raise_memlock_limit()?;
        if memlock.soft > memlock.was {
            tracing::info!(
                from_kib = memlock.was / 1024,
                to_kib = memlock.soft / 1024,
                "raised the memlock soft limit to the hard limit"
            );
        }

        let (embedded, bootstrap) = match &config.kafka.brokers {
            Brokers::Embedded { partitions } => {
                let broker = EmbeddedBroker::start(&config.kafka.topics, *partitions)
                    .context("starting the embedded Kafka broker")?;
                let bootstrap = broker.bootstrap().to_string();
                tracing::info!(bootstrap = %bootstrap, topics = ?config.kafka.topics, "embedded Kafka broker started");
                (Some(broker), bootstrap)
            }
            Brokers::Remote(bootstrap) => (None, bootstrap.clone()),
        };

        let shard_count = config.placement.shard_count as usize;
        let ingest_metrics = Arc::new(IngestMetrics::default());
        let inbox_depth: Arc<[Gauge]> = (0..shard_count).map(|_| Gauge::default()).collect();
        let readiness = Arc::new(Readiness::new(shard_count));
        let shared = Arc::new(Shared {
            connection_count: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            readiness: readiness.clone(),
            registry: Registry {
                shards: (0..shard_count).map(|_| Arc::new(ShardMetrics::default())).collect(),
                ingest: ingest_metrics.clone(),
                inbox_depth: inbox_depth.clone(),
                readiness: readiness.clone(),
            },
        });

        let (listeners, local_addr) = bind_listeners(config.listen, shard_count)?;
        let instance_id = config
            .kafka
            .instance_id
            .clone()
            .unwrap_or_else(|| default_instance_id(local_addr.port()));
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(StartGate::default());
        let mut started = Started {
            gate: gate.clone(),
            shards: Vec::with_capacity(shard_count),
        };
        let mut senders = Vec::with_capacity(shard_count);
        for (i, listener) in listeners.into_iter().enumerate() {
            let (sender, inbox) = inbox::inbox(config.inbox_capacity).context("creating a shard inbox")?;
            senders.push(sender.stop_waiting_on(stop.clone()));
            let start = ShardStart {
                id: ShardId(i as u16),
                core: config.placement.shard_cores.as_ref().map(|cores| cores[i]),
                listener,
                inbox,
                shared: shared.clone(),
                config: config.shard.clone(),
                auth: config.auth.clone(),
            };
            started.shards.push(executor::spawn(start, gate.clone())?);
        }

        let source = kafka::start(
            &config.kafka,
            &bootstrap,
            &instance_id,
            ingest_metrics.clone(),
            readiness,
            config.shard.drain_timeout,
        )
        .with_context(|| format!("starting the Kafka consumer for {bootstrap}"))?;
        let dispatcher = Dispatcher::new(senders, inbox_depth, ingest_metrics.clone());
        let ingest = ingest::spawn(
            source,
            dispatcher,
            ingest_metrics,
            config.placement.ingest_core,
            stop.clone(),
        )
        .context("starting the ingest thread")?;
        let shards = started.serve();
        tracing::info!(
            addr = %local_addr,
            shards = shard_count,
            bootstrap = %bootstrap,
            instance = %instance_id,
            group = %config.kafka.instance_group(&instance_id),
            "fanout serving"
        );
        Ok(Engine {
            local_addr,
            bootstrap,
            instance_id,
            shared,
            stop,
            ingest: Some(ingest),
            shards,
            embedded,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The Kafka bootstrap address in use (the embedded broker's, if any).
    pub fn kafka_bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// This instance's id (SPEC §11); it commits under
    /// `<--kafka-group-id>.<instance id>`.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Whether the embedded broker is running.
    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// What stopped, if the ingest thread or a shard is no longer running:
    /// the process is no longer whole and should stop.
    pub fn failure(&self) -> Option<&'static str> {
        if self.ingest.as_ref().is_none_or(JoinHandle::is_finished) {
            return Some("the ingest thread stopped");
        }
        if !self.shared.readiness.is_healthy() {
            return Some("a shard stopped");
        }
        None
    }

    /// First step of a graceful stop (SPEC §10): `/readyz` answers 503 so a
    /// load balancer sends no new clients; everything else keeps serving.
    pub fn start_draining(&self) {
        tracing::info!("draining: /readyz answers 503, still serving");
        self.shared.readiness.start_draining();
    }

    /// Stops in the order of SPEC §10 and waits for every thread.
    pub fn shutdown(mut self) -> Result<()> {
        tracing::info!("shutting down");
        self.shared.readiness.start_draining();
        self.shared.shutting_down.store(true, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ingest) = self.ingest.take() {
            ingest
                .join()
                .map_err(|_| anyhow::anyhow!("the ingest thread panicked"))?;
        }
        for (i, shard) in self.shards.drain(..).enumerate() {
            shard.join().map_err(|err| anyhow::anyhow!("shard {i} failed: {err}"))?;
        }
        drop(self.embedded.take());
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Shards that run but do not serve yet. Dropped without [`Started::serve`]
/// (start-up failed later), it tells them to end and waits for them.
struct Started {
    gate: Arc<StartGate>,
    shards: Vec<glommio::ExecutorJoinHandle<()>>,
}

impl Started {
    /// Lets every shard serve.
    fn serve(mut self) -> Vec<glommio::ExecutorJoinHandle<()>> {
        self.gate.open();
        std::mem::take(&mut self.shards)
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if self.shards.is_empty() {
            return; // served, or none started
        }
        self.gate.abandon();
        for shard in self.shards.drain(..) {
            let _ = shard.join();
        }
    }
}

/// One listening socket per shard on the same address (SO_REUSEPORT: the
/// kernel spreads connections over shards). Port 0 is resolved by the first.
fn bind_listeners(addr: SocketAddr, count: usize) -> Result<(Vec<OwnedFd>, SocketAddr)> {
    let mut sockets = Vec::with_capacity(count);
    let mut bound = addr;
    for _ in 0..count {
        let socket = Socket::new(Domain::for_address(bound), Type::STREAM, None).context("creating a socket")?;
        socket.set_reuse_port(true)?;
        socket.set_reuse_address(true)?;
        socket.set_tcp_nodelay(true)?;
        socket.bind(&bound.into()).with_context(|| format!("binding {bound}"))?;
        socket.listen(4096).with_context(|| format!("listening on {bound}"))?;
        if bound.port() == 0 {
            bound = socket.local_addr()?.as_socket().context("local address is not IP")?;
        }
        sockets.push(OwnedFd::from(socket));
    }
    Ok((sockets, bound))
}

/// Installs the log subscriber (`RUST_LOG` filters, default `info`).
pub fn init_logging(format: crate::config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a terminal: a log file or collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        crate::config::LogFormat::Text => builder.try_init(),
        crate::config::LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
