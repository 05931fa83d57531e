//! What the run exercises: the key space, how subscribers and events pick
//! keys, the event envelope we produce and the public message we read back.
//!
//! Pure and deterministic (seeded), used by `run` to plan subscribers, by
//! `produce` to make events and by `client` to parse deliveries.
//! Invariant: an envelope's `schedule_id` is `<seq>:<send_unix_nanos>`, and
//! `parse_delivery` recovers exactly those two numbers from the SPEC §6 public
//! message the server derives from it.

use std::fmt::Write as _;

use anyhow::{Context, bail, ensure};
use serde::Deserialize;

/// Course keys `C0000`..`C{K-1}`, zero-padded to at least four digits.
#[derive(Debug, Clone, Copy)]
pub struct KeySpace {
    /// Number of keys, K.
    pub key_count: u32,
    width: usize,
}

impl KeySpace {
    /// A key space of `key_count` keys (at least one).
    pub fn new(key_count: u32) -> Self {
        let width = key_count.saturating_sub(1).to_string().len().max(4);
        KeySpace { key_count, width }
    }

    /// Appends the name of key `index` to `out`.
    pub fn write_name(&self, out: &mut String, index: u32) {
        write!(out, "C{index:0w$}", w = self.width).expect("writing to a String");
    }

    /// The name of key `index`.
    #[cfg(test)]
    pub fn name(&self, index: u32) -> String {
        let mut s = String::with_capacity(self.width + 1);
        self.write_name(&mut s, index);
        s
    }

    /// The index of a key name, or `None` if it is not one of ours.
    pub fn index(&self, name: &str) -> Option<u32> {
        let digits = name.strip_prefix('C')?;
        if digits.len() != self.width || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let i: u32 = digits.parse().ok()?;
        (i < self.key_count).then_some(i)
    }
}

/// SplitMix64: small, fast, seedable; statistical quality is plenty for
/// picking keys.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; bias below 2^-32 for our n).
    pub fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * n as u64) >> 32) as u32
    }
}

/// How keys are drawn.
#[derive(Debug, Clone)]
pub enum KeyPicker {
    /// Every key equally likely.
    Uniform(u32),
    /// Key i with probability proportional to 1/(i+1)^s; holds the CDF.
    Zipf(Vec<f64>),
}

impl KeyPicker {
    /// Uniform over `key_count` keys.
    pub fn uniform(key_count: u32) -> Self {
        KeyPicker::Uniform(key_count)
    }

    /// Zipf over `key_count` keys with exponent `s` (> 0); `C0000` is the most
    /// popular. Costs 8 bytes per key.
    pub fn zipf(key_count: u32, s: f64) -> Self {
        let mut acc = 0.0;
        let cdf = (0..key_count)
            .map(|i| {
                acc += 1.0 / ((i + 1) as f64).powf(s);
                acc
            })
            .collect();
        KeyPicker::Zipf(cdf)
    }

    /// Draws one key index.
    pub fn pick(&self, rng: &mut Rng) -> u32 {
        match self {
            KeyPicker::Uniform(n) => rng.below(*n),
            KeyPicker::Zipf(cdf) => {
                let total = *cdf.last().expect("key_count >= 1");
                let u = rng.next_f64() * total;
                let i = cdf.partition_point(|&c| c <= u);
                i.min(cdf.len() - 1) as u32
            }
        }
    }

    /// Draws `count` distinct keys, sorted. Falls back to the lowest unused
    /// keys if the distribution is too skewed to find them by rejection.
    pub fn pick_distinct(&self, rng: &mut Rng, count: u32, key_count: u32) -> Vec<u32> {
        let count = count.min(key_count) as usize;
        let mut keys = Vec::with_capacity(count);
        let mut tries = 0;
        while keys.len() < count && tries < 64 * count {
            let k = self.pick(rng);
            if !keys.contains(&k) {
                keys.push(k);
            }
            tries += 1;
        }
        let mut next = 0;
        while keys.len() < count {
            if !keys.contains(&next) {
                keys.push(next);
            }
            next += 1;
        }
        keys.sort_unstable();
        keys
    }
}

/// Appends the SPEC §5 envelope of event `seq` to `out` (about 130 bytes).
pub fn write_envelope(out: &mut Vec<u8>, topic: &str, seq: u64, course_id: &str, send_unix_nanos: u64) {
    let slots_remaining = seq % 50;
    // io::Write on Vec<u8> cannot fail.
    std::io::Write::write_fmt(
        out,
        format_args!(
            "{{\"topic\":\"{topic}\",\"payload\":{{\"data\":{{\"booking_id\":\"b{seq}\",\
             \"course_id\":\"{course_id}\",\"schedule_id\":\"{seq}:{send_unix_nanos}\",\
             \"slots_remaining\":{slots_remaining}}}}}}}"
        ),
    )
    .expect("writing to a Vec");
}

/// One message read by a subscriber after its ack.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery<'a> {
    /// An `availability.updated` for one of our events.
    Availability {
        /// The `course_id` field, as received.
        course_id: &'a str,
        /// Event sequence number from `schedule_id`.
        seq: u64,
        /// Producer's send time from `schedule_id`, Unix nanoseconds.
        send_unix_nanos: u64,
    },
    /// Any other message type (pong, error, ...), by its `type`.
    Other(&'a str),
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    course_id: Option<&'a str>,
    #[serde(borrow)]
    schedule_id: Option<&'a str>,
}

/// Parses a text message from the server.
pub fn parse_delivery(text: &[u8]) -> anyhow::Result<Delivery<'_>> {
    let wire: Wire = serde_json::from_slice(text).context("message is not the expected JSON")?;
    if wire.kind != "availability.updated" {
        return Ok(Delivery::Other(wire.kind));
    }
    let (Some(course_id), Some(schedule_id)) = (wire.course_id, wire.schedule_id) else {
        bail!("availability.updated without course_id or schedule_id");
    };
    let (seq, nanos) = schedule_id
        .split_once(':')
        .with_context(|| format!("schedule_id {schedule_id:?} is not <seq>:<nanos>"))?;
    let seq = seq.parse().context("bad seq in schedule_id")?;
    let send_unix_nanos = nanos.parse().context("bad nanos in schedule_id")?;
    ensure!(send_unix_nanos > 0, "zero send time in schedule_id");
    Ok(Delivery::Availability {
        course_id,
        seq,
        send_unix_nanos,
    })
}

/// The `type` of a control message (`connected`, `subscribed`, `error`).
pub fn message_type(text: &[u8]) -> anyhow::Result<&str> {
    #[derive(Deserialize)]
    struct Typed<'a> {
        #[serde(rename = "type", borrow)]
        kind: &'a str,
    }
    let typed: Typed = serde_json::from_slice(text).context("message is not JSON with a type")?;
    Ok(typed.kind)
}

/// The subscribe message for `keys` (SPEC §4), as JSON text.
pub fn subscribe_message(space: &KeySpace, keys: &[u32]) -> String {
    let mut s = String::from(r#"{"type":"subscribe","filters":{"course_id":["#);
    for (i, &k) in keys.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        space.write_name(&mut s, k);
        s.push('"');
    }
    s.push_str("]}}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn key_names_round_trip_and_reject_foreign_names() {
        let space = KeySpace::new(100);
        assert_eq!(space.name(42), "C0042");
        assert_eq!(space.index("C0042"), Some(42));
        assert_eq!(space.index("C0100"), None);
        assert_eq!(space.index("C042"), None);
        assert_eq!(space.index("PIANO-101"), None);
        let wide = KeySpace::new(100_000);
        assert_eq!(wide.name(7), "C00007");
        assert_eq!(wide.index("C99999"), Some(99_999));
    }

    #[test]
    fn uniform_picks_every_key_about_equally() {
        let mut rng = Rng::new(7);
        let picker = KeyPicker::uniform(10);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[picker.pick(&mut rng) as usize] += 1;
        }
        for c in counts {
            assert!((9_500..10_500).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn zipf_matches_its_probabilities() {
        let (k, s) = (100u32, 1.0);
        let picker = KeyPicker::zipf(k, s);
        let h: f64 = (1..=k).map(|i| 1.0 / (i as f64).powf(s)).sum();
        let mut rng = Rng::new(3);
        let mut counts = vec![0u32; k as usize];
        let n = 200_000;
        for _ in 0..n {
            counts[picker.pick(&mut rng) as usize] += 1;
        }
        for rank in [0usize, 1, 9] {
            let expected = n as f64 / ((rank + 1) as f64 * h);
            let got = counts[rank] as f64;
            assert!(
                (got - expected).abs() < 0.05 * expected,
                "rank {rank}: {got} vs {expected}"
            );
        }
        assert!(counts[0] > counts[50] * 20);
    }

    #[test]
    fn pick_distinct_gives_distinct_sorted_keys_even_when_skewed() {
        let mut rng = Rng::new(1);
        let picker = KeyPicker::zipf(5, 8.0);
        let keys = picker.pick_distinct(&mut rng, 5, 5);
        assert_eq!(keys, vec![0, 1, 2, 3, 4]);
        let keys = KeyPicker::uniform(1000).pick_distinct(&mut rng, 20, 1000);
        assert_eq!(keys.len(), 20);
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    /// What the server does (SPEC §5 body lookup, §6 public message).
    fn server_transform(envelope: &[u8]) -> Vec<u8> {
        let env: Value = serde_json::from_slice(envelope).unwrap();
        let data = &env["payload"]["data"];
        let msg = json!({
            "type": "availability.updated",
            "course_id": data["course_id"],
            "schedule_id": data["schedule_id"],
            "slots_remaining": data["slots_remaining"],
            "timestamp": "2026-11-23T10:00:00.000Z",
        });
        serde_json::to_vec(&msg).unwrap()
    }

    #[test]
    fn envelope_round_trips_through_the_public_message() {
        let mut buf = Vec::new();
        let nanos = 1_790_000_000_123_456_789;
        write_envelope(&mut buf, "booking.created", 123_456, "C0042", nanos);
        assert!(buf.len() <= 160, "envelope is {} bytes", buf.len());
        let env: Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(env["topic"], "booking.created");
        assert_eq!(env["payload"]["data"]["slots_remaining"], 123_456 % 50);
        let public = server_transform(&buf);
        assert_eq!(
            parse_delivery(&public).unwrap(),
            Delivery::Availability {
                course_id: "C0042",
                seq: 123_456,
                send_unix_nanos: nanos
            }
        );
    }

    #[test]
    fn parse_delivery_classifies_other_and_malformed_messages() {
        let pong = br#"{"type":"pong","timestamp":"x"}"#;
        assert_eq!(parse_delivery(pong).unwrap(), Delivery::Other("pong"));
        let bad_id = br#"{"type":"availability.updated","course_id":"C0001","schedule_id":"x"}"#;
        assert!(parse_delivery(bad_id).is_err());
        assert!(parse_delivery(b"not json").is_err());
    }

    #[test]
    fn subscribe_message_is_spec_json() {
        let msg = subscribe_message(&KeySpace::new(10), &[1, 3]);
        let v: Value = serde_json::from_str(&msg).unwrap();
        assert_eq!(v, json!({"type":"subscribe","filters":{"course_id":["C0001","C0003"]}}));
        assert_eq!(message_type(msg.as_bytes()).unwrap(), "subscribe");
    }
}
