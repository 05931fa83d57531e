//! fanout: Kafka events to exactly the WebSocket clients whose filters match.
//!
//! ```text
//!  Kafka ──poll──▶ ingest thread (pinned) ──Arc<Outbound>──▶ shard 0 (glommio, pinned)
//!                  decode (simd-json)         crossbeam      ├─ SO_REUSEPORT listener
//!                  build admin+public msgs    bounded inbox  ├─ index: key -> conns
//!                  frame each ONCE            + doorbell     └─ conns: write same bytes
//!                  store offset after hand-off          ───▶ shard 1 ...
//! ```
//!
//! Module map, in the order data flows:
//! - [`config`]: CLI -> checked [`config::Config`].
//! - [`app`]: start and stop everything.
//! - [`ingest`]: the poll -> decode -> dispatch loop over an
//!   [`ingest::EventSource`] (Kafka, or memory in tests); [`ingest::decode`]
//!   builds an [`event::Outbound`] per record; [`ingest::dispatch`] hands it
//!   to shards.
//! - [`route`]: SPEC §6, which audience gets which message shape.
//! - [`event`]: the unit that flows.
//! - [`shard`]: per-core state; `index` (key -> connections), `listener`
//!   (HTTP, upgrade, auth), `connection` (one client), `inbox` (channel).
//! - [`protocol`]: client messages, replies, WebSocket frames.
//! - [`auth`]: admin sessions in Redis.
//! - [`metrics`]: counters summed on scrape; [`readiness`]: what `/readyz`
//!   answers.
//! - [`json`], [`clock`]: how messages write strings and time.

pub mod app;
pub mod auth;
pub mod clock;
pub mod config;
pub mod event;
pub mod ingest;
pub mod json;
pub mod metrics;
pub mod protocol;
pub mod readiness;
pub mod route;
pub mod shard;

pub use app::Engine;
pub use config::{Cli, Config};
