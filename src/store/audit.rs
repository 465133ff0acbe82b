//! The hash chain over a run's events: each row's hash covers the previous.

use sha2::{Digest, Sha256};

use super::EventRow;

/// The first thing in a run's record that does not check out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {problem}")]
pub struct AuditError {
    /// Where: an event, the run's row, an artifact.
    pub at: Where,
    /// What is wrong there.
    pub problem: String,
}

/// Where an [`AuditError`] was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Where {
    /// The event at this position of the log.
    Event(i64),
    /// The run's row (its status, message, head).
    Run,
    /// An artifact a step saved.
    Artifact {
        /// The step.
        step: String,
        /// The artifact's name.
        name: String,
    },
}

impl std::fmt::Display for Where {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Where::Event(seq) => write!(f, "event {seq}"),
            Where::Run => f.write_str("the run's row"),
            Where::Artifact { step, name } => write!(f, "artifact `{name}` of `{step}`"),
        }
    }
}

/// sha256 over the previous hash, the position and the event's JSON.
pub fn chain(previous: &str, seq: i64, body: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(previous.as_bytes());
    hasher.update(b"\n");
    hasher.update(seq.to_string().as_bytes());
    hasher.update(b"\n");
    hasher.update(body.as_bytes());
    format!("{:x}", hasher.finalize())
}

/// Walks the chain: the number of events, or the first broken row.
/// `count` and `last` are what the run row says the log should end with,
/// so a removed last row is found too.
pub fn verify(events: &[EventRow], count: i64, last: &str) -> Result<usize, AuditError> {
    let mut previous = String::new();
    for (i, event) in events.iter().enumerate() {
        let expected_seq = i as i64 + 1;
        if event.seq != expected_seq {
            return Err(AuditError {
                at: Where::Event(expected_seq),
                problem: format!("expected event {expected_seq} here, found event {} (a row was removed or moved)", event.seq),
            });
        }
        if chain(&previous, event.seq, &event.body) != event.hash {
            return Err(AuditError {
                at: Where::Event(event.seq),
                problem: "its contents or position do not match its hash (edited or moved)"
                    .to_owned(),
            });
        }
        previous = event.hash.clone();
    }
    if events.len() as i64 != count || previous != last {
        return Err(AuditError {
            at: Where::Event(events.len() as i64 + 1),
            problem: format!(
                "the run recorded {count} events but {} remain (rows were removed)",
                events.len()
            ),
        });
    }
    Ok(events.len())
}
