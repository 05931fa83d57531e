//! `--kafka-brokers embedded`: librdkafka's mock cluster, in process.
//!
//! A Kafka-protocol broker on a loopback port that any Kafka client can
//! produce to, so the service runs (and is tested) on a bare machine. The
//! mock cluster lives inside a producer handle owned here; it is not `Send`,
//! so it stays on the thread that started it (the main thread).

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{BaseProducer, Producer};

/// The running mock cluster.
pub struct EmbeddedBroker {
    handle: BaseProducer,
    bootstrap: String,
}

impl EmbeddedBroker {
    /// Starts a one-broker mock cluster with `topics`, `partitions` each.
    pub fn start(topics: &[String], partitions: i32) -> KafkaResult<EmbeddedBroker> {
        let handle: BaseProducer = ClientConfig::new().set("test.mock.num.brokers", "1").create()?;
        let bootstrap = {
            let cluster = handle.client().mock_cluster().ok_or(KafkaError::ClientCreation(
                "librdkafka did not create the mock cluster".into(),
            ))?;
            for topic in topics {
                cluster.create_topic(topic, partitions, 1)?;
            }
            cluster.bootstrap_servers()
        };
        // The mock coordinator waits 3 s before the first rebalance of a
        // group by default; a local broker has no one to wait for.
        // SAFETY: the handle owns a live mock cluster (checked above).
        unsafe {
            let cluster = rdkafka_sys::rd_kafka_handle_mock_cluster(handle.client().native_ptr());
            rdkafka_sys::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 0);
        }
        Ok(EmbeddedBroker { handle, bootstrap })
    }

    /// Address to produce to and consume from.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Takes the broker down (`true`: connections fail and are refused) or
    /// brings it back, to exercise what clients do when a broker is lost.
    pub fn set_down(&self, down: bool) -> KafkaResult<()> {
        let cluster = self
            .handle
            .client()
            .mock_cluster()
            .ok_or(KafkaError::ClientCreation("the mock cluster is gone".into()))?;
        if down {
            cluster.broker_down(1)
        } else {
            cluster.broker_up(1)
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        let _ = self.handle.flush(std::time::Duration::from_millis(100));
    }
}
