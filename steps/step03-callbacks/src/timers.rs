//! The connections' idle deadlines, soonest first: what the event loop's `poll` sleeps until.
//!
//! A sorted set of `(deadline, token)`: adding and taking the soonest cost a logarithm of the
//! number of connections, and nothing scans every connection on every turn. Production loops
//! use a hierarchical timing wheel (tokio's), where adding is constant time and a tick only
//! looks at the slot that is due; for the idle deadlines of a few thousand connections, which
//! change once per idle period (see `Server::time_out_idle_connections`), a sorted set is
//! plenty and easier to read.

use std::collections::BTreeSet;
use std::time::Instant;

use mio::Token;

/// Deadlines, each for a connection's token.
#[derive(Debug, Default)]
pub struct Timers {
    /// Sorted by deadline; the token keeps two deadlines at the same instant apart.
    deadlines: BTreeSet<(Instant, usize)>,
}

impl Timers {
    /// Adds a deadline for `token`.
    pub fn add(&mut self, deadline: Instant, token: Token) {
        self.deadlines.insert((deadline, token.0));
    }

    /// The soonest deadline, if any.
    pub fn next(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// Takes out the soonest deadline if it is at or before `now`, and returns its token.
    pub fn pop_due(&mut self, now: Instant) -> Option<Token> {
        match self.deadlines.first() {
            Some(&(deadline, token)) if deadline <= now => {
                self.deadlines.pop_first();
                Some(Token(token))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn deadlines_come_out_soonest_first_and_only_when_due() {
        let now = Instant::now();
        let mut timers = Timers::default();
        timers.add(now + Duration::from_secs(3), Token(1));
        timers.add(now + Duration::from_secs(1), Token(2));
        timers.add(now + Duration::from_secs(1), Token(3));
        assert_eq!(timers.next(), Some(now + Duration::from_secs(1)));
        assert_eq!(timers.pop_due(now), None, "nothing is due yet");
        let later = now + Duration::from_secs(2);
        assert_eq!(timers.pop_due(later), Some(Token(2)));
        assert_eq!(timers.pop_due(later), Some(Token(3)));
        assert_eq!(timers.pop_due(later), None);
        assert_eq!(timers.next(), Some(now + Duration::from_secs(3)));
    }
}
