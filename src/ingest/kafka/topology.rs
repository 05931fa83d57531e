//! What is known about the configured topics, and what a fresh metadata
//! answer asks to be assigned (SPEC §11).
//!
//! Pure bookkeeping, no I/O: `discovery` looks the topics up, asks
//! [`Topology::plan`] what changed, resolves and assigns the new partitions,
//! and only then records the answer with [`Topology::apply`] (a failed
//! assignment is planned again on the next lookup). Runs on the topology
//! thread.
//!
//! Where a new partition starts when this instance's group has no committed
//! position for it: a partition present at the first answer that lists its
//! topic starts where `auto.offset.reset` says (a live service starts at the
//! end); a partition that appears later (added to a topic, or its topic
//! created, while we run) starts at its beginning, since everything in it
//! was produced after we started watching.
//!
//! Invariant: the partitions of a topic in state `Present(n)` are exactly
//! 0..n, and those are the ones assigned to the consumer.

/// What one metadata lookup said about a configured topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// The topic exists with this many partitions.
    Partitions(i32),
    /// The broker says the topic does not exist.
    Missing,
    /// The lookup failed (broker unreachable, leader election): no news.
    Failed(String),
}

/// Where a new partition starts when its group has no committed position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// At the watermark `auto.offset.reset` names.
    Reset,
    /// At the low watermark.
    Beginning,
}

/// One partition to assign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPartition {
    /// Its topic.
    pub topic: String,
    /// Its number.
    pub partition: i32,
    /// Where it starts without a committed position.
    pub from: StartFrom,
}

/// What a metadata answer asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Partitions to resolve and assign.
    pub add: Vec<NewPartition>,
    /// Partitions of topics that no longer exist, to unassign.
    pub remove: Vec<(String, i32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No lookup has answered yet.
    Unseen,
    /// Known not to exist.
    Missing,
    /// Exists; partitions 0..n are assigned.
    Present(i32),
}

/// The configured topics and what is assigned of each.
#[derive(Debug)]
pub struct Topology {
    topics: Vec<(String, State)>,
}

impl Topology {
    /// Nothing known yet about `topics`.
    pub fn new(topics: &[String]) -> Topology {
        Topology {
            topics: topics.iter().map(|t| (t.clone(), State::Unseen)).collect(),
        }
    }

    /// What `seen` (one answer per topic, in order) asks to change.
    pub fn plan(&self, seen: &[Seen]) -> Plan {
        let mut plan = Plan::default();
        for ((topic, state), seen) in self.topics.iter().zip(seen) {
            match (*state, seen) {
                (State::Unseen, Seen::Partitions(n)) => add(&mut plan, topic, 0..*n, StartFrom::Reset),
                (State::Missing, Seen::Partitions(n)) => add(&mut plan, topic, 0..*n, StartFrom::Beginning),
                (State::Present(had), Seen::Partitions(n)) => {
                    // Kafka cannot take partitions away; a smaller count is
                    // a stale answer and changes nothing.
                    add(&mut plan, topic, had..*n, StartFrom::Beginning)
                }
                (State::Present(had), Seen::Missing) => {
                    plan.remove.extend((0..had).map(|p| (topic.clone(), p)));
                }
                (_, Seen::Missing | Seen::Failed(_)) => {}
            }
        }
        plan
    }

    /// Records `seen` after its plan was carried out.
    pub fn apply(&mut self, seen: &[Seen]) {
        for ((_, state), seen) in self.topics.iter_mut().zip(seen) {
            *state = match (*state, seen) {
                (State::Present(had), Seen::Partitions(n)) => State::Present(had.max(*n)),
                (_, Seen::Partitions(n)) => State::Present(*n),
                (_, Seen::Missing) => State::Missing,
                (unchanged, Seen::Failed(_)) => unchanged,
            };
        }
    }

    /// Partitions assigned now.
    pub fn assigned_count(&self) -> usize {
        self.topics
            .iter()
            .map(|(_, state)| match state {
                State::Present(n) => *n as usize,
                _ => 0,
            })
            .sum()
    }

    /// `None` when every topic is assigned (ready, SPEC §2), else why not,
    /// naming the topics (and the lookup error, if that is why).
    pub fn not_ready_reason(&self, seen: &[Seen]) -> Option<String> {
        let mut missing = Vec::new();
        let mut unassigned = Vec::new();
        let mut error = None;
        for ((topic, state), seen) in self.topics.iter().zip(seen) {
            match (state, seen) {
                (State::Present(_), _) => {}
                (State::Missing, _) => missing.push(format!("{topic:?}")),
                (State::Unseen, seen) => {
                    unassigned.push(format!("{topic:?}"));
                    if let (None, Seen::Failed(err)) = (&error, seen) {
                        error = Some(err.clone());
                    }
                }
            }
        }
        if !missing.is_empty() {
            return Some(format!(
                "kafka: topic {} does not exist (it is picked up once created)",
                missing.join(", ")
            ));
        }
        if unassigned.is_empty() {
            return None;
        }
        let because = error.map(|err| format!(": {err}")).unwrap_or_default();
        Some(format!(
            "kafka: partitions of {} not assigned yet{because}",
            unassigned.join(", ")
        ))
    }
}

fn add(plan: &mut Plan, topic: &str, partitions: std::ops::Range<i32>, from: StartFrom) {
    plan.add.extend(partitions.map(|partition| NewPartition {
        topic: topic.to_string(),
        partition,
        from,
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        Topology::new(&["a".to_string(), "b".to_string()])
    }

    fn starts(plan: &Plan) -> Vec<(&str, i32, StartFrom)> {
        plan.add
            .iter()
            .map(|p| (p.topic.as_str(), p.partition, p.from))
            .collect()
    }

    #[test]
    fn partitions_at_the_first_answer_start_where_the_reset_policy_says() {
        let topology = topology();
        let seen = [Seen::Partitions(2), Seen::Partitions(1)];
        let plan = topology.plan(&seen);
        assert_eq!(
            starts(&plan),
            [
                ("a", 0, StartFrom::Reset),
                ("a", 1, StartFrom::Reset),
                ("b", 0, StartFrom::Reset)
            ]
        );
        assert_eq!(
            topology.not_ready_reason(&seen),
            Some("kafka: partitions of \"a\", \"b\" not assigned yet".into())
        );
    }

    #[test]
    fn partitions_added_while_running_start_at_their_beginning() {
        // See: #9
        let mut topology = topology();
        let first = [Seen::Partitions(2), Seen::Partitions(1)];
        topology.apply(&first);
        assert_eq!(topology.not_ready_reason(&first), None);
        let grown = [Seen::Partitions(4), Seen::Partitions(1)];
        assert_eq!(
            starts(&topology.plan(&grown)),
            [("a", 2, StartFrom::Beginning), ("a", 3, StartFrom::Beginning)]
        );
        topology.apply(&grown);
        assert_eq!(topology.assigned_count(), 5);
        assert_eq!(topology.plan(&grown), Plan::default(), "nothing new");
        let stale = [Seen::Partitions(3), Seen::Failed("timed out".into())];
        assert_eq!(topology.plan(&stale), Plan::default());
        topology.apply(&stale);
        assert_eq!(
            topology.assigned_count(),
            5,
            "a stale or failed answer takes nothing away"
        );
    }

    #[test]
    fn a_topic_created_while_running_starts_at_its_beginning_and_gates_readiness() {
        let mut topology = topology();
        let seen = [Seen::Partitions(1), Seen::Missing];
        assert_eq!(starts(&topology.plan(&seen)), [("a", 0, StartFrom::Reset)]);
        topology.apply(&seen);
        assert_eq!(
            topology.not_ready_reason(&seen),
            Some("kafka: topic \"b\" does not exist (it is picked up once created)".into())
        );
        let created = [Seen::Partitions(1), Seen::Partitions(2)];
        assert_eq!(
            starts(&topology.plan(&created)),
            [("b", 0, StartFrom::Beginning), ("b", 1, StartFrom::Beginning)]
        );
        topology.apply(&created);
        assert_eq!(topology.not_ready_reason(&created), None);
    }

    #[test]
    fn a_deleted_topic_is_unassigned_and_its_successor_starts_at_the_beginning() {
        let mut topology = topology();
        topology.apply(&[Seen::Partitions(1), Seen::Partitions(2)]);
        let deleted = [Seen::Partitions(1), Seen::Missing];
        let plan = topology.plan(&deleted);
        assert_eq!(plan.remove, [("b".to_string(), 0), ("b".to_string(), 1)]);
        topology.apply(&deleted);
        assert_eq!(topology.assigned_count(), 1);
        let back = [Seen::Partitions(1), Seen::Partitions(1)];
        assert_eq!(starts(&topology.plan(&back)), [("b", 0, StartFrom::Beginning)]);
    }

    #[test]
    fn a_failed_lookup_of_an_unseen_topic_names_the_error() {
        let topology = topology();

        let seen = [Seen::Failed("all brokers down".into()), Seen::Partitions(1)];
        let mut topology = topology;
        assert_eq!(starts(&topology.plan(&seen)), [("b", 0, StartFrom::Reset)]);
        topology.apply(&seen);
        assert_eq!(
            topology.not_ready_reason(&seen),
            Some("kafka: partitions of \"a\" not assigned yet: all brokers down".into())
        );
    }
}
