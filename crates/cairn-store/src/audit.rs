//! The hash chain over a run's events: each row's hash covers the previous.

use sha2::{Digest, Sha256};

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
    String::from_utf8_lossy(&hex(previous, seq, body)).into_owned()
}

/// [`chain`]'s hash as hex bytes, with nothing allocated.
fn hex(previous: &str, seq: i64, body: &str) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hasher = Sha256::new();
    hasher.update(previous.as_bytes());
    hasher.update(b"\n");
    if seq < 0 {
        hasher.update(b"-");
    }
    hasher.update(decimal(seq.unsigned_abs(), &mut [0; 20]));
    hasher.update(b"\n");
    hasher.update(body.as_bytes());
    let mut hex = [0u8; 64];
    for (i, byte) in hasher.finalize().iter().enumerate() {
        hex[2 * i] = DIGITS[usize::from(byte >> 4)];
        hex[2 * i + 1] = DIGITS[usize::from(byte & 15)];
    }
    hex
}

/// The chain walked one row at a time, in log order (a resume verifies a
/// long run's every event: nothing is allocated per row).
#[derive(Default)]
pub struct Chain {
    /// The last row's hash, as hex.
    previous: String,
    /// Rows walked.
    count: i64,
}

impl Chain {
    /// Takes the next row; the first that does not check out is the error.
    pub fn push(&mut self, seq: i64, body: &str, hash: &str) -> Result<(), AuditError> {
        let expected_seq = self.count + 1;
        if seq != expected_seq {
            return Err(AuditError {
                at: Where::Event(expected_seq),
                problem: format!("expected event {expected_seq} here, found event {seq} (a row was removed or moved)"),
            });
        }
        let hex = hex(&self.previous, seq, body);
        if hex[..] != *hash.as_bytes() {
            return Err(AuditError {
                at: Where::Event(seq),
                problem: "its contents or position do not match its hash (edited or moved)"
                    .to_owned(),
            });
        }
        self.previous.clear();
        self.previous.push_str(hash);
        self.count = seq;
        Ok(())
    }

    /// The number of rows and the head, once every row is walked. `count`
    /// and `last` are what the run row says the log should end with, so a
    /// removed last row is found too.
    pub fn finish(self, count: i64, last: &str) -> Result<(usize, String), AuditError> {
        if self.count != count || self.previous != last {
            return Err(AuditError {
                at: Where::Event(self.count + 1),
                problem: format!(
                    "the run recorded {count} events but {} remain (rows were removed)",
                    self.count
                ),
            });
        }
        Ok((self.count as usize, self.previous))
    }

    /// Rows walked so far, and the head (the last row's hash).
    pub fn so_far(&self) -> (i64, &str) {
        (self.count, &self.previous)
    }
}

/// `n` in decimal, written into `buf` (what `n.to_string()` would say).
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}
