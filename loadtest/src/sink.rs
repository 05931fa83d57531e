//! Where events go: `EventSink`, with `KafkaSink` (rdkafka producer) and
//! `PublishSink` (text frames over one WebSocket, for a peer server).
//!
//! Built by `run`, then moved to the producer thread, which is the only one
//! that sends; both block that thread rather than drop an event when full.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};

use crate::ws::{self, MaskSource};

/// How long to wait for broker metadata before calling it unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Destination of produced events.
pub trait EventSink: Send {
    /// Sends one envelope, keyed by its course_id; blocks while the sink is
    /// full, errors only when it is broken.
    fn send(&mut self, key: &str, payload: &[u8]) -> anyhow::Result<()>;
    /// Waits until everything sent is acknowledged (or `timeout`).
    fn flush(&mut self, timeout: Duration) -> anyhow::Result<()>;
    /// Events the destination reported as failed after `send` returned.
    fn delivery_errors(&self) -> u64;
}

/// Counts asynchronous delivery failures.
struct CountingContext {
    errors: Arc<AtomicU64>,
    first_error: Arc<Mutex<Option<String>>>,
}

impl ClientContext for CountingContext {}

impl ProducerContext for CountingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, msg)) = result {
            self.errors.fetch_add(1, Relaxed);
            let mut first = self.first_error.lock().expect("first error poisoned");
            first.get_or_insert_with(|| format!("{e} (topic {})", msg.topic()));
        }
    }
}

/// Kafka producer with latency-first settings.
pub struct KafkaSink {
    producer: ThreadedProducer<CountingContext>,
    topic: String,
    errors: Arc<AtomicU64>,
    first_error: Arc<Mutex<Option<String>>>,
}

impl KafkaSink {
    /// Creates the producer and checks that the brokers answer metadata
    /// within 5 s; warns if `topic` does not exist yet.
    pub fn connect(brokers: &str, opts: &[(String, String)], topic: &str) -> anyhow::Result<Self> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", brokers);
        for (k, v) in opts {
            config.set(k, v);
        }
        let errors = Arc::new(AtomicU64::new(0));
        let first_error = Arc::new(Mutex::new(None));
        let context = CountingContext {
            errors: errors.clone(),
            first_error: first_error.clone(),
        };
        let producer: ThreadedProducer<CountingContext> = config
            .create_with_context(context)
            .context("creating the Kafka producer (check --kafka-opt)")?;
        let metadata = producer
            .client()
            .fetch_metadata(Some(topic), PROBE_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("cannot reach Kafka broker {brokers} within {PROBE_TIMEOUT:?}"))?;
        let found = metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
        if !found {
            eprintln!("loadtest: warning: topic {topic} not found on {brokers}; relying on auto-create");
        }
        Ok(KafkaSink {
            producer,
            topic: topic.to_owned(),
            errors,
            first_error,
        })
    }
}

impl EventSink for KafkaSink {
    fn send(&mut self, key: &str, payload: &[u8]) -> anyhow::Result<()> {
        let mut record = BaseRecord::to(&self.topic).key(key).payload(payload);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // The background thread drains the queue; wait for room.
                    record = r;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err((e, _)) => bail!("producing to {}: {e}", self.topic),
            }
        }
    }

    fn flush(&mut self, timeout: Duration) -> anyhow::Result<()> {
        self.producer
            .flush(timeout)
            .map_err(|e| anyhow::anyhow!("flushing the producer: {e}"))?;
        if let Some(e) = self.first_error.lock().expect("first error poisoned").as_ref() {
            eprintln!("loadtest: first delivery error: {e}");
        }
        Ok(())
    }

    fn delivery_errors(&self) -> u64 {
        self.errors.load(Relaxed)
    }
}

/// One WebSocket to a peer server's publish endpoint.
pub struct PublishSink {
    writer: Arc<Mutex<TcpStream>>,
    masks: MaskSource,
    frame: Vec<u8>,
    broken: Arc<Mutex<Option<String>>>,
}

impl PublishSink {
    /// Connects and upgrades; a reader thread answers pings and notes a close.
    pub fn connect(addr: SocketAddr, host: &str, path: &str) -> anyhow::Result<Self> {
        let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)
            .with_context(|| format!("cannot reach publish endpoint {addr}"))?;
        stream.set_nodelay(true)?;
        let upgrade = ws::Upgrade::new(host, path, None);
        stream.write_all(upgrade.request.as_bytes())?;
        stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
        let mut buf = Vec::new();
        let head_len = loop {
            if let Some(n) = ws::head_len(&buf) {
                break n;
            }
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).context("reading the upgrade response")?;
            if n == 0 {
                bail!("publish endpoint closed during the upgrade");
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        upgrade
            .check_response(&buf[..head_len])
            .with_context(|| format!("upgrading ws://{host}{path}"))?;
        stream.set_read_timeout(None)?;
        let writer = Arc::new(Mutex::new(stream.try_clone()?));
        let broken = Arc::new(Mutex::new(None));
        let (w, b) = (writer.clone(), broken.clone());
        buf.drain(..head_len);
        std::thread::Builder::new()
            .name("publish-reader".into())
            .spawn(move || read_publish_socket(stream, buf, w, b))?;
        Ok(PublishSink {
            writer,
            masks: MaskSource::new(crate::stats::unix_nanos()),
            frame: Vec::with_capacity(256),
            broken,
        })
    }
}

/// Reads and discards what the peer sends on the publish socket, answering
/// pings; records why it stopped.
fn read_publish_socket(
    mut stream: TcpStream,
    mut buf: Vec<u8>,
    writer: Arc<Mutex<TcpStream>>,
    broken: Arc<Mutex<Option<String>>>,
) {
    let mut masks = MaskSource::new(7);
    let reason = loop {
        match ws::parse_head(&buf) {
            Err(e) => break format!("{e:#}"),
            Ok(Some(h)) if buf.len() >= h.frame_len() => {
                let payload = &buf[h.payload_start..h.frame_len()];
                match h.opcode {
                    ws::OP_PING => {
                        let mut out = Vec::new();
                        ws::encode_frame(&mut out, ws::OP_PONG, payload, masks.next_mask());
                        let _ = writer.lock().expect("writer poisoned").write_all(&out);
                    }
                    ws::OP_CLOSE => break format!("peer closed with {}", ws::close_code(payload)),
                    _ => {}
                }
                buf.drain(..h.frame_len());
                continue;
            }
            Ok(_) => {}
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => break "peer closed the connection".to_owned(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => break e.to_string(),
        }
    };
    *broken.lock().expect("broken poisoned") = Some(reason);
}

impl EventSink for PublishSink {
    fn send(&mut self, _key: &str, payload: &[u8]) -> anyhow::Result<()> {
        if let Some(reason) = self.broken.lock().expect("broken poisoned").as_ref() {
            bail!("publish connection lost: {reason}");
        }
        self.frame.clear();
        ws::encode_frame(&mut self.frame, ws::OP_TEXT, payload, self.masks.next_mask());
        self.writer
            .lock()
            .expect("writer poisoned")
            .write_all(&self.frame)
            .context("writing to the publish connection")
    }

    fn flush(&mut self, _timeout: Duration) -> anyhow::Result<()> {
        self.writer
            .lock()
            .expect("writer poisoned")
            .flush()
            .context("flushing the publish connection")
    }

    fn delivery_errors(&self) -> u64 {
        0
    }
}
